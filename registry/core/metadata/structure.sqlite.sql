-- The newest metadata schema on SQLite, as the migrations build it. Generated: do not edit;
-- python -m registry.core.metadata.migrate --dump-sqlite > registry/core/metadata/structure.sqlite.sql
CREATE TABLE alembic_version (
	version_num VARCHAR(32) NOT NULL, 
	CONSTRAINT alembic_version_pkc PRIMARY KEY (version_num)
);
CREATE TABLE accounts (
	name VARCHAR(64) NOT NULL, 
	kind VARCHAR(8) NOT NULL, 
	password_hash TEXT, 
	admin BOOLEAN DEFAULT 0 NOT NULL, 
	created FLOAT NOT NULL, sessions_after FLOAT, 
	CONSTRAINT pk_accounts PRIMARY KEY (name)
);
CREATE TABLE members (
	organization VARCHAR(64) NOT NULL, 
	user VARCHAR(64) NOT NULL, 
	role VARCHAR(8) NOT NULL, 
	CONSTRAINT pk_members PRIMARY KEY (organization, user), 
	CONSTRAINT fk_members_organization_accounts FOREIGN KEY(organization) REFERENCES accounts (name) ON DELETE CASCADE, 
	CONSTRAINT fk_members_user_accounts FOREIGN KEY(user) REFERENCES accounts (name) ON DELETE CASCADE
);
CREATE TABLE access_tokens (
	id VARCHAR(32) NOT NULL, 
	user VARCHAR(64) NOT NULL, 
	name TEXT NOT NULL, 
	secret_hash VARCHAR(64) NOT NULL, 
	created FLOAT NOT NULL, 
	last_used FLOAT, scope VARCHAR(16) DEFAULT 'admin' NOT NULL, 
	CONSTRAINT pk_access_tokens PRIMARY KEY (id), 
	CONSTRAINT fk_access_tokens_user_accounts FOREIGN KEY(user) REFERENCES accounts (name) ON DELETE CASCADE
);
CREATE TABLE refresh_tokens (
	token_hash VARCHAR(64) NOT NULL, 
	user VARCHAR(64) NOT NULL, 
	password VARCHAR(64) NOT NULL, 
	access_token VARCHAR(32), 
	created FLOAT NOT NULL, 
	CONSTRAINT pk_refresh_tokens PRIMARY KEY (token_hash), 
	CONSTRAINT fk_refresh_tokens_user_accounts FOREIGN KEY(user) REFERENCES accounts (name) ON DELETE CASCADE
);
CREATE TABLE ended_sessions (
	nonce_hash VARCHAR(64) NOT NULL, 
	expires FLOAT NOT NULL, 
	CONSTRAINT pk_ended_sessions PRIMARY KEY (nonce_hash)
);
CREATE TABLE repositories (
	name VARCHAR(255) NOT NULL, 
	namespace VARCHAR(64), 
	short_name VARCHAR(255) NOT NULL, 
	visibility VARCHAR(8) NOT NULL, 
	description TEXT DEFAULT '' NOT NULL, 
	full_description TEXT DEFAULT '' NOT NULL, 
	star_count INTEGER DEFAULT '0' NOT NULL, 
	pushed FLOAT, 
	created FLOAT NOT NULL, 
	search_text TEXT GENERATED ALWAYS AS (lower(name || '|' || description)) STORED, pull_count INTEGER DEFAULT '0' NOT NULL, last_pulled FLOAT, push_count INTEGER DEFAULT '0' NOT NULL, 
	CONSTRAINT pk_repositories PRIMARY KEY (name)
);
CREATE TABLE stars (
	repository VARCHAR(255) NOT NULL, 
	user VARCHAR(64) NOT NULL, 
	created FLOAT NOT NULL, 
	CONSTRAINT pk_stars PRIMARY KEY (repository, user), 
	CONSTRAINT fk_stars_repository_repositories FOREIGN KEY(repository) REFERENCES repositories (name) ON DELETE CASCADE, 
	CONSTRAINT fk_stars_user_accounts FOREIGN KEY(user) REFERENCES accounts (name) ON DELETE CASCADE
);
CREATE TABLE webhooks (
	id VARCHAR(32) NOT NULL, 
	repository VARCHAR(255) NOT NULL, 
	url TEXT NOT NULL, 
	events VARCHAR(64) NOT NULL, 
	secret TEXT, 
	created FLOAT NOT NULL, 
	CONSTRAINT pk_webhooks PRIMARY KEY (id)
);
CREATE VIRTUAL TABLE repository_search USING fts5(name, description, content='repositories', content_rowid='rowid', tokenize='trigram');
CREATE TABLE tag_activity (
	repository VARCHAR(255) NOT NULL, 
	tag VARCHAR(128) NOT NULL, 
	pull_count INTEGER DEFAULT '0' NOT NULL, 
	last_pulled FLOAT, 
	push_count INTEGER DEFAULT '0' NOT NULL, 
	last_pushed FLOAT, 
	CONSTRAINT pk_tag_activity PRIMARY KEY (repository, tag)
);
CREATE TABLE webhook_deliveries (
	id VARCHAR(36) NOT NULL, 
	webhook VARCHAR(32) NOT NULL, 
	event VARCHAR(16) NOT NULL, 
	attempts INTEGER DEFAULT '0' NOT NULL, 
	status INTEGER, 
	error TEXT, 
	delivered BOOLEAN DEFAULT 0 NOT NULL, 
	done BOOLEAN DEFAULT 0 NOT NULL, 
	created FLOAT NOT NULL, 
	CONSTRAINT pk_webhook_deliveries PRIMARY KEY (id), 
	CONSTRAINT fk_webhook_deliveries_webhook_webhooks FOREIGN KEY(webhook) REFERENCES webhooks (id) ON DELETE CASCADE
);
CREATE TABLE rate_events (
	id INTEGER NOT NULL, 
	"key" VARCHAR(300) NOT NULL, 
	at FLOAT NOT NULL, 
	CONSTRAINT pk_rate_events PRIMARY KEY (id)
);
CREATE TABLE facts (
	name VARCHAR(64) NOT NULL, 
	value TEXT NOT NULL, 
	CONSTRAINT pk_facts PRIMARY KEY (name)
);
CREATE INDEX ix_members_user ON members (user);
CREATE INDEX ix_access_tokens_user ON access_tokens (user);
CREATE INDEX ix_ended_sessions_expires ON ended_sessions (expires);
CREATE INDEX ix_repositories_namespace ON repositories (namespace);
CREATE INDEX ix_repositories_star_count ON repositories (star_count);
CREATE INDEX ix_stars_user ON stars (user);
CREATE INDEX ix_webhooks_repository ON webhooks (repository);
CREATE INDEX ix_webhook_deliveries_webhook_created ON webhook_deliveries (webhook, created);
CREATE INDEX ix_rate_events_key_at ON rate_events ("key", at);
CREATE TRIGGER repositories_search_insert AFTER INSERT ON repositories BEGIN INSERT INTO repository_search(rowid, name, description) VALUES (new.rowid, new.name, new.description); END;
CREATE TRIGGER repositories_search_delete AFTER DELETE ON repositories BEGIN INSERT INTO repository_search(repository_search, rowid, name, description) VALUES ('delete', old.rowid, old.name, old.description); END;
CREATE TRIGGER repositories_search_update AFTER UPDATE OF name, description ON repositories BEGIN INSERT INTO repository_search(repository_search, rowid, name, description) VALUES ('delete', old.rowid, old.name, old.description); INSERT INTO repository_search(rowid, name, description) VALUES (new.rowid, new.name, new.description); END;
INSERT INTO alembic_version (version_num) VALUES ('0003');
