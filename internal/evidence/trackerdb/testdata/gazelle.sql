-- The Gazelle/Ocelot tables the connector reads, with their own table and
-- column names and types (a subset of `torrents`' columns).
CREATE TABLE torrents (
  ID int NOT NULL AUTO_INCREMENT PRIMARY KEY,
  GroupID int NOT NULL,
  UserID int DEFAULT NULL,
  info_hash blob NOT NULL,
  Size bigint NOT NULL DEFAULT 0,
  Time datetime DEFAULT NULL
);
CREATE TABLE xbt_files_users (
  uid int NOT NULL,
  active tinyint(1) NOT NULL DEFAULT 1,
  announced int NOT NULL DEFAULT 0,
  completed tinyint(1) NOT NULL DEFAULT 0,
  downloaded bigint NOT NULL DEFAULT 0,
  remaining bigint NOT NULL DEFAULT 0,
  uploaded bigint NOT NULL DEFAULT 0,
  upspeed int unsigned NOT NULL DEFAULT 0,
  downspeed int unsigned NOT NULL DEFAULT 0,
  corrupt bigint NOT NULL DEFAULT 0,
  timespent int unsigned NOT NULL DEFAULT 0,
  useragent varchar(51) NOT NULL DEFAULT '',
  connectable tinyint NOT NULL DEFAULT 1,
  peer_id binary(20) NOT NULL DEFAULT '',
  fid int NOT NULL,
  mtime int NOT NULL DEFAULT 0,
  ip varchar(15) NOT NULL DEFAULT '',
  PRIMARY KEY (peer_id, fid, uid),
  KEY mtime (mtime)
);
