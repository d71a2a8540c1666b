BEGIN TRANSACTION;
CREATE TABLE analytics_keywords (
	day VARCHAR(10) NOT NULL, 
	room_id VARCHAR(128) NOT NULL, 
	channel VARCHAR(64) NOT NULL, 
	word VARCHAR(64) NOT NULL, 
	n INTEGER NOT NULL, 
	PRIMARY KEY (day, room_id, channel, word)
);
INSERT INTO "analytics_keywords" VALUES('2026-12-08','','','价格',1);
INSERT INTO "analytics_keywords" VALUES('2026-12-08','','','退订',1);
CREATE TABLE customer_tags (
	contact_id VARCHAR(128) NOT NULL, 
	tag VARCHAR(64) NOT NULL, 
	added_at FLOAT NOT NULL, 
	source VARCHAR(64) NOT NULL, 
	PRIMARY KEY (contact_id, tag)
);
INSERT INTO "customer_tags" VALUES('alice','asked:price',1.79669222596288490293e+09,'auto_reply');
CREATE TABLE customers (
	id VARCHAR(128) NOT NULL, 
	name VARCHAR(255) NOT NULL, 
	alias VARCHAR(255) NOT NULL, 
	channel VARCHAR(64) NOT NULL, 
	stage VARCHAR(16) NOT NULL, 
	first_seen FLOAT, 
	last_inbound FLOAT, 
	last_outbound FLOAT, 
	is_friend BOOLEAN NOT NULL, 
	notes TEXT NOT NULL, 
	consent JSON NOT NULL, 
	stage_at FLOAT, 
	purged_at FLOAT, 
	PRIMARY KEY (id)
);
INSERT INTO "customers" VALUES('alice','alice','','','engaged',1.79669222596288490293e+09,1.79669222596288490293e+09,NULL,1,'','{}',1.79669222596288490293e+09,NULL);
INSERT INTO "customers" VALUES('bob','bob','','','engaged',1.79669223796288490295e+09,1.79669223796288490295e+09,NULL,1,'','{}',1.79669223796288490295e+09,NULL);
INSERT INTO "customers" VALUES('dave','dave','','','engaged',1.79669224396288490291e+09,1.79669224396288490291e+09,NULL,1,'','{}',1.79669224396288490291e+09,NULL);
CREATE TABLE events (
	id INTEGER NOT NULL, 
	ts DATETIME NOT NULL, 
	kind VARCHAR(64) NOT NULL, 
	plugin VARCHAR(64) NOT NULL, 
	chat_id VARCHAR(255) NOT NULL, 
	contact_id VARCHAR(255) NOT NULL, 
	room_id VARCHAR(255) NOT NULL, 
	data JSON NOT NULL, 
	PRIMARY KEY (id)
);
INSERT INTO "events" VALUES(1,'2026-12-08 01:10:19.962885','in.message','','alice','alice','','{"stale": false, "type": "text", "length": 2, "mentions_self": true}');
INSERT INTO "events" VALUES(2,'2026-12-08 01:10:19.962885','greeter.greeted','greeter','','alice','','{"count": 1}');
INSERT INTO "events" VALUES(3,'2026-12-08 01:10:19.962885','out.queued','greeter','','','','{"kind": "send", "cls": "reply", "to": "alice", "key": "greeter/hello", "job": ""}');
INSERT INTO "events" VALUES(4,'2026-12-08 01:10:25.962885','out.sent','greeter','','','','{"kind": "send", "cls": "reply", "to": "alice", "key": "greeter/hello", "job": "", "reason": ""}');
INSERT INTO "events" VALUES(5,'2026-12-08 01:10:25.962885','in.message','','alice','alice','','{"stale": false, "type": "text", "length": 2, "mentions_self": true}');
INSERT INTO "events" VALUES(6,'2026-12-08 01:10:25.962885','out.queued','auto_reply','','','','{"kind": "send", "cls": "reply", "to": "alice", "key": "auto_reply/price", "job": ""}');
INSERT INTO "events" VALUES(7,'2026-12-08 01:10:25.962885','auto_reply.reply','auto_reply','alice','alice','','{"source": "rule", "rule": "price", "key": "auto_reply/price"}');
INSERT INTO "events" VALUES(8,'2026-12-08 01:10:31.962885','out.sent','auto_reply','','','','{"kind": "send", "cls": "reply", "to": "alice", "key": "auto_reply/price", "job": "", "reason": ""}');
INSERT INTO "events" VALUES(9,'2026-12-08 01:10:31.962885','in.friend_request','','carol','carol','','{"stale": false}');
INSERT INTO "events" VALUES(10,'2026-12-08 01:10:31.962885','friends.request','friends','','carol','','{"verdict": "review", "rule": "none", "channel": ""}');
INSERT INTO "events" VALUES(11,'2026-12-08 01:10:31.962885','friends.review_queued','friends','','carol','','{"n": 1}');
INSERT INTO "events" VALUES(12,'2026-12-08 01:10:31.962885','in.message','','bob','bob','','{"stale": false, "type": "text", "length": 2, "mentions_self": true}');
INSERT INTO "events" VALUES(13,'2026-12-08 01:10:31.962885','greeter.greeted','greeter','','bob','','{"count": 1}');
INSERT INTO "events" VALUES(14,'2026-12-08 01:10:31.962885','out.queued','greeter','','','','{"kind": "send", "cls": "reply", "to": "bob", "key": "greeter/hello", "job": ""}');
INSERT INTO "events" VALUES(15,'2026-12-08 01:10:37.962885','out.sent','greeter','','','','{"kind": "send", "cls": "reply", "to": "bob", "key": "greeter/hello", "job": "", "reason": ""}');
INSERT INTO "events" VALUES(16,'2026-12-08 01:10:37.962885','in.message','','bob','bob','','{"stale": false, "type": "text", "length": 2, "mentions_self": true}');
INSERT INTO "events" VALUES(17,'2026-12-08 01:10:37.962885','contact.opt_out','','','bob','','{"source": "keyword", "new": true}');
INSERT INTO "events" VALUES(18,'2026-12-08 01:10:37.962885','out.queued','core','','','','{"kind": "send", "cls": "reply", "to": "bob", "key": "core/optout_confirm", "job": ""}');
INSERT INTO "events" VALUES(19,'2026-12-08 01:10:43.962885','out.sent','core','','','','{"kind": "send", "cls": "reply", "to": "bob", "key": "core/optout_confirm", "job": "", "reason": ""}');
INSERT INTO "events" VALUES(20,'2026-12-08 01:10:43.962885','in.member_joined','','r1','','r1','{"stale": false}');
INSERT INTO "events" VALUES(21,'2026-12-08 01:10:43.962885','groups.join','groups','r1','dave','r1','{"members": 2, "invited": false, "inviter": ""}');
INSERT INTO "events" VALUES(22,'2026-12-08 01:10:43.962885','groups.join','groups','r1','erin','r1','{"members": 2, "invited": false, "inviter": ""}');
INSERT INTO "events" VALUES(23,'2026-12-08 01:10:43.962885','in.message','','r1','dave','r1','{"stale": false, "type": "text", "length": 7, "mentions_self": true}');
INSERT INTO "events" VALUES(24,'2026-12-08 01:10:43.962885','groups.message','groups','r1','dave','r1','{"type": "text"}');
INSERT INTO "events" VALUES(25,'2026-12-08 01:10:43.962885','out.queued','groups','','','','{"kind": "send", "cls": "reply", "to": "r1", "key": "groups/rules", "job": ""}');
INSERT INTO "events" VALUES(26,'2026-12-08 01:10:43.962885','groups.rules','groups','r1','','r1','{"trigger": "keyword", "sent": true}');
INSERT INTO "events" VALUES(27,'2026-12-08 01:10:49.962885','out.sent','groups','','','','{"kind": "send", "cls": "reply", "to": "r1", "key": "groups/rules", "job": "", "reason": ""}');
CREATE TABLE friends_adds (
	contact_id VARCHAR(128) NOT NULL, 
	seq INTEGER NOT NULL, 
	source VARCHAR(160) NOT NULL, 
	consent VARCHAR(255) NOT NULL, 
	name VARCHAR(255) NOT NULL, 
	channel VARCHAR(64) NOT NULL, 
	tags JSON NOT NULL, 
	status VARCHAR(16) NOT NULL, 
	reason VARCHAR(64) NOT NULL, 
	job VARCHAR(128) NOT NULL, 
	queued_at FLOAT NOT NULL, 
	requested_at FLOAT, 
	updated_at FLOAT NOT NULL, 
	PRIMARY KEY (contact_id)
);
CREATE TABLE friends_followups (
	contact_id VARCHAR(128) NOT NULL, 
	sequence VARCHAR(32) NOT NULL, 
	run INTEGER NOT NULL, 
	step INTEGER NOT NULL, 
	anchor VARCHAR(160) NOT NULL, 
	anchor_at FLOAT NOT NULL, 
	due_at FLOAT NOT NULL, 
	status VARCHAR(16) NOT NULL, 
	reason VARCHAR(64) NOT NULL, 
	sent INTEGER NOT NULL, 
	updated_at FLOAT NOT NULL, 
	PRIMARY KEY (contact_id, sequence)
);
CREATE TABLE friends_members (
	room_id VARCHAR(128) NOT NULL, 
	contact_id VARCHAR(128) NOT NULL, 
	name VARCHAR(255) NOT NULL, 
	is_friend BOOLEAN NOT NULL, 
	last_seen FLOAT NOT NULL, 
	left_at FLOAT, 
	PRIMARY KEY (room_id, contact_id)
);
CREATE TABLE groups_audit (
	id INTEGER NOT NULL, 
	at FLOAT NOT NULL, 
	room_id VARCHAR(128) NOT NULL, 
	contact_id VARCHAR(128) NOT NULL, 
	action VARCHAR(32) NOT NULL, 
	rule VARCHAR(32) NOT NULL, 
	msg_type VARCHAR(32) NOT NULL, 
	message_id VARCHAR(255) NOT NULL, 
	strike_id INTEGER, 
	strikes INTEGER NOT NULL, 
	dry_run BOOLEAN NOT NULL, 
	actor VARCHAR(128) NOT NULL, 
	detail VARCHAR(64) NOT NULL, 
	PRIMARY KEY (id)
);
CREATE TABLE groups_members (
	room_id VARCHAR(128) NOT NULL, 
	contact_id VARCHAR(128) NOT NULL, 
	name VARCHAR(255) NOT NULL, 
	active BOOLEAN NOT NULL, 
	joined_at FLOAT, 
	left_at FLOAT, 
	invited_at FLOAT, 
	PRIMARY KEY (room_id, contact_id)
);
INSERT INTO "groups_members" VALUES('r1','dave','dave',1,1.79669224396288490291e+09,NULL,NULL);
INSERT INTO "groups_members" VALUES('r1','erin','erin',1,1.79669224396288490291e+09,NULL,NULL);
CREATE TABLE groups_strikes (
	id INTEGER NOT NULL, 
	room_id VARCHAR(128) NOT NULL, 
	contact_id VARCHAR(128) NOT NULL, 
	rule VARCHAR(32) NOT NULL, 
	msg_type VARCHAR(32) NOT NULL, 
	at FLOAT NOT NULL, 
	dry_run BOOLEAN NOT NULL, 
	revoked_at FLOAT, 
	revoked_by VARCHAR(128) NOT NULL, 
	PRIMARY KEY (id)
);
CREATE TABLE inbox (
	"key" VARCHAR(255) NOT NULL, 
	status VARCHAR(16) NOT NULL, 
	received_at FLOAT NOT NULL, 
	handled_at FLOAT, 
	payload TEXT NOT NULL, 
	PRIMARY KEY ("key")
);
INSERT INTO "inbox" VALUES('message:console-071059-1','handled',1.79669221996288490297e+09,1.79669221996288490297e+09,'');
INSERT INTO "inbox" VALUES('message:console-071059-2','handled',1.79669222596288490293e+09,1.79669222596288490293e+09,'');
INSERT INTO "inbox" VALUES('friend_request:console-071059-3','handled',1.79669223196288490294e+09,1.79669223196288490294e+09,'');
INSERT INTO "inbox" VALUES('message:console-071059-4','handled',1.79669223196288490294e+09,1.79669223196288490294e+09,'');
INSERT INTO "inbox" VALUES('message:console-071059-5','handled',1.79669223796288490295e+09,1.79669223796288490295e+09,'');
INSERT INTO "inbox" VALUES('member_joined:console-071059-6','handled',1.79669224396288490291e+09,1.79669224396288490291e+09,'');
INSERT INTO "inbox" VALUES('message:console-071059-7','handled',1.79669224396288490291e+09,1.79669224396288490291e+09,'');
CREATE TABLE kv (
	namespace VARCHAR(64) NOT NULL, 
	"key" VARCHAR(255) NOT NULL, 
	value JSON, 
	PRIMARY KEY (namespace, "key")
);
INSERT INTO "kv" VALUES('rights','audit_minimised',1);
INSERT INTO "kv" VALUES('friends','sync_cursor',0);
INSERT INTO "kv" VALUES('groups','rolled_until',1796691600);
INSERT INTO "kv" VALUES('broadcasts','heartbeat','{"wall": 1796692230.1573753, "at": 1796692219.962885, "pid": 1560, "transport": "console", "stopped": true}');
INSERT INTO "kv" VALUES('calendar','watermark','"2026-12-08T09:10:19.962885+08:00"');
INSERT INTO "kv" VALUES('calendar','pruned_on','"2026-12-08"');
INSERT INTO "kv" VALUES('health','heartbeat','{"run_id": "90ee4c01", "pid": 1560, "host": "vm", "started_at": 1796692219.962885, "beat_at": 1796692249.962885, "transport": "console", "connected": true, "pending": 0, "stopped": true}');
INSERT INTO "kv" VALUES('greeter','greetings:alice',1);
INSERT INTO "kv" VALUES('rights','salt','"d698d1ef14c8ac3d9b9665254bf9f9eb"');
INSERT INTO "kv" VALUES('friends','review_seq',1);
INSERT INTO "kv" VALUES('friends','review:console-071059-3','{"ticket": "console-071059-3", "contact_id": "carol", "name": "carol", "alias": "", "hello": "我想了解一下", "at": 1796692231.962885, "n": 1}');
INSERT INTO "kv" VALUES('greeter','greetings:bob',1);
INSERT INTO "kv" VALUES('groups','size:r1',2);
INSERT INTO "kv" VALUES('groups','pending:r1','{"first": 1796692243.962885, "members": [{"id": "dave", "name": "dave", "at": 1796692243.962885, "friend": true}, {"id": "erin", "name": "erin", "at": 1796692243.962885, "friend": true}]}');
INSERT INTO "kv" VALUES('analytics','room:r1','"r1"');
INSERT INTO "kv" VALUES('groups','rules:r1',1.79669224396288490291e+09);
CREATE TABLE out_counters (
	day VARCHAR(10) NOT NULL, 
	kind VARCHAR(32) NOT NULL, 
	n INTEGER NOT NULL, 
	PRIMARY KEY (day, kind)
);
INSERT INTO "out_counters" VALUES('2026-12-08','send',5);
CREATE TABLE out_jobs (
	job VARCHAR(128) NOT NULL, 
	status VARCHAR(16) NOT NULL, 
	created_at FLOAT NOT NULL, 
	meta JSON NOT NULL, 
	PRIMARY KEY (job)
);
CREATE TABLE out_marketing (
	contact_id VARCHAR(128) NOT NULL, 
	last_at FLOAT NOT NULL, 
	PRIMARY KEY (contact_id)
);
CREATE TABLE out_optout (
	contact_id VARCHAR(128) NOT NULL, 
	at FLOAT NOT NULL, 
	source VARCHAR(64) NOT NULL, 
	PRIMARY KEY (contact_id)
);
INSERT INTO "out_optout" VALUES('bob',1.79669223796288490295e+09,'keyword');
CREATE TABLE out_queue (
	id VARCHAR(255) NOT NULL, 
	seq INTEGER NOT NULL, 
	priority INTEGER NOT NULL, 
	alert BOOLEAN NOT NULL, 
	status VARCHAR(16) NOT NULL, 
	parts_done INTEGER NOT NULL, 
	reason VARCHAR(64) NOT NULL, 
	created_at FLOAT NOT NULL, 
	updated_at FLOAT NOT NULL, 
	action TEXT NOT NULL, 
	PRIMARY KEY (id)
);
INSERT INTO "out_queue" VALUES('message:console-071059-1#0',1,1,0,'sent',1,'',1.79669221996288490297e+09,1.79669222596288490293e+09,'{"kind": "send", "to": "alice", "cls": "reply", "text": "", "key": "greeter/hello", "mentions": [], "member_id": "", "ticket": "", "plugin": "greeter", "job": "", "contact_id": "alice"}');
INSERT INTO "out_queue" VALUES('message:console-071059-2#0',2,1,0,'sent',1,'',1.79669222596288490293e+09,1.79669223196288490294e+09,'{"kind": "send", "to": "alice", "cls": "reply", "text": "", "key": "auto_reply/price", "mentions": [], "member_id": "", "ticket": "", "plugin": "auto_reply", "job": "", "contact_id": "alice"}');
INSERT INTO "out_queue" VALUES('message:console-071059-4#0',3,1,0,'sent',1,'',1.79669223196288490294e+09,1.79669223796288490295e+09,'{"kind": "send", "to": "bob", "cls": "reply", "text": "", "key": "greeter/hello", "mentions": [], "member_id": "", "ticket": "", "plugin": "greeter", "job": "", "contact_id": "bob"}');
INSERT INTO "out_queue" VALUES('message:console-071059-5#0',4,1,0,'sent',1,'',1.79669223796288490295e+09,1.79669224396288490291e+09,'{"kind": "send", "to": "bob", "cls": "reply", "text": "", "key": "core/optout_confirm", "mentions": [], "member_id": "", "ticket": "", "plugin": "core", "job": "", "contact_id": "bob"}');
INSERT INTO "out_queue" VALUES('message:console-071059-7#0',5,1,0,'sent',1,'',1.79669224396288490291e+09,1.79669224996288490288e+09,'{"kind": "send", "to": "r1", "cls": "reply", "text": "", "key": "groups/rules", "mentions": ["dave"], "member_id": "", "ticket": "", "plugin": "groups", "job": "", "contact_id": ""}');
CREATE TABLE out_row_parts (
	job VARCHAR(128) NOT NULL, 
	recipient VARCHAR(128) NOT NULL, 
	parts_done INTEGER NOT NULL, 
	PRIMARY KEY (job, recipient)
);
CREATE TABLE out_rows (
	job VARCHAR(128) NOT NULL, 
	recipient VARCHAR(128) NOT NULL, 
	seq INTEGER NOT NULL, 
	status VARCHAR(16) NOT NULL, 
	reason VARCHAR(64) NOT NULL, 
	updated_at FLOAT NOT NULL, 
	action TEXT NOT NULL, 
	PRIMARY KEY (job, recipient)
);
CREATE TABLE referral_codes (
	contact_id VARCHAR(128) NOT NULL, 
	code VARCHAR(16) NOT NULL, 
	at FLOAT NOT NULL, 
	PRIMARY KEY (contact_id), 
	UNIQUE (code)
);
CREATE TABLE referral_invites (
	id INTEGER NOT NULL, 
	invitee_id VARCHAR(128) NOT NULL, 
	inviter_id VARCHAR(128) NOT NULL, 
	path VARCHAR(32) NOT NULL, 
	room_id VARCHAR(128) NOT NULL, 
	at FLOAT NOT NULL, 
	due FLOAT NOT NULL, 
	status VARCHAR(16) NOT NULL, 
	reason VARCHAR(32) NOT NULL, 
	review VARCHAR(16) NOT NULL, 
	settled_at FLOAT, 
	void_by VARCHAR(128) NOT NULL, 
	void_reason VARCHAR(200) NOT NULL, 
	PRIMARY KEY (id), 
	UNIQUE (invitee_id)
);
CREATE TABLE referral_rewards (
	contact_id VARCHAR(128) NOT NULL, 
	threshold INTEGER NOT NULL, 
	at FLOAT NOT NULL, 
	count INTEGER NOT NULL, 
	PRIMARY KEY (contact_id, threshold)
);
CREATE TABLE seen_messages (
	msg_id VARCHAR(255) NOT NULL, 
	ts DATETIME NOT NULL, 
	PRIMARY KEY (msg_id)
);
CREATE INDEX ix_events_contact_id_ts ON events (contact_id, ts);
CREATE INDEX ix_events_kind_ts ON events (kind, ts);
CREATE INDEX ix_seen_messages_ts ON seen_messages (ts);
CREATE INDEX ix_out_rows_job_status ON out_rows (job, status, seq);
CREATE INDEX ix_customers_last_inbound ON customers (last_inbound);
CREATE INDEX ix_customers_channel ON customers (channel);
CREATE INDEX ix_customer_tags_tag ON customer_tags (tag);
CREATE INDEX ix_inbox_received_at ON inbox (received_at);
CREATE INDEX ix_inbox_status ON inbox (status);
CREATE INDEX ix_out_queue_status ON out_queue (status, seq);
CREATE INDEX ix_referral_invites_inviter ON referral_invites (inviter_id, at);
CREATE INDEX ix_referral_invites_status ON referral_invites (status, due);
CREATE INDEX ix_friends_followups_due ON friends_followups (status, due_at);
CREATE INDEX ix_friends_adds_status ON friends_adds (status, seq);
CREATE INDEX ix_friends_adds_requested ON friends_adds (requested_at);
CREATE INDEX ix_friends_members_contact ON friends_members (contact_id);
CREATE INDEX ix_groups_members_contact ON groups_members (contact_id);
CREATE INDEX ix_groups_strikes_member ON groups_strikes (room_id, contact_id, at);
CREATE INDEX ix_groups_audit_at ON groups_audit (at);
CREATE INDEX ix_analytics_keywords_day ON analytics_keywords (day);
COMMIT;
