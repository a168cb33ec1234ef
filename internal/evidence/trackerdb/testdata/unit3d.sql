-- The UNIT3D tables the connector reads, with UNIT3D's own table and
-- column names and types (a subset of the columns; see the package doc).
CREATE TABLE torrents (
  id int unsigned NOT NULL AUTO_INCREMENT PRIMARY KEY,
  name varchar(255) NOT NULL,
  info_hash binary(20) NOT NULL UNIQUE,
  size bigint unsigned NOT NULL DEFAULT 0,
  seeders int NOT NULL DEFAULT 0,
  leechers int NOT NULL DEFAULT 0,
  created_at timestamp NULL DEFAULT NULL,
  updated_at timestamp NULL DEFAULT NULL
);
CREATE TABLE peers (
  id bigint unsigned NOT NULL AUTO_INCREMENT PRIMARY KEY,
  peer_id binary(20) NOT NULL,
  ip varbinary(16) NOT NULL,
  port smallint unsigned NOT NULL,
  agent varchar(64) NOT NULL,
  uploaded bigint unsigned NOT NULL,
  downloaded bigint unsigned NOT NULL,
  `left` bigint unsigned NOT NULL,
  seeder tinyint(1) NOT NULL,
  torrent_id int unsigned NOT NULL,
  user_id int unsigned NOT NULL,
  connectable tinyint(1) NOT NULL DEFAULT 0,
  active tinyint(1) NOT NULL DEFAULT 1,
  visible tinyint(1) NOT NULL DEFAULT 1,
  created_at timestamp NULL DEFAULT NULL,
  updated_at timestamp NULL DEFAULT NULL,
  UNIQUE KEY peers_user_id_torrent_id_peer_id_unique (user_id, torrent_id, peer_id),
  KEY peers_updated_at_index (updated_at)
);
CREATE TABLE announces (
  id bigint unsigned NOT NULL AUTO_INCREMENT PRIMARY KEY,
  user_id int unsigned NOT NULL,
  torrent_id int unsigned NOT NULL,
  uploaded bigint unsigned NOT NULL,
  downloaded bigint unsigned NOT NULL,
  `left` bigint unsigned NOT NULL,
  corrupt bigint unsigned NOT NULL DEFAULT 0,
  peer_id binary(20) NOT NULL,
  port smallint unsigned NOT NULL,
  numwant smallint unsigned NOT NULL DEFAULT 0,
  created_at timestamp NOT NULL,
  event varchar(255) NOT NULL DEFAULT '',
  `key` varchar(255) NOT NULL DEFAULT ''
);
