//! Evidence against the operator (issue 27), black box: the real `lightwidget` binary over
//! HTTP and its command line, on both stores.
//!
//! 1. A witness holds a checkpoint. The operator stops the server and restores an older
//!    backup under the same key: with the checkpoint file kept the server refuses to sign
//!    (`/readyz` 503 naming `log`); with it deleted too, `witness check` exits 4, then after
//!    more appends 3, the state file never changes, and `verify-evidence` accepts the fork's
//!    evidence and refuses a forged copy (and the rollback's, which proves nothing).
//! 2. An operator who rewrites an event's bytes and recomputes the chain, but not the tree,
//!    passes a heads-only check and is caught by `--audit-events` (exit 2).
//! 3. An erasure receipt verifies offline and online with `receipt verify`; altered, it
//!    does not.

use super::cli::{serve_with, terminate};
use lightwidget_store::MasterKey;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

const BIN: &str = env!("CARGO_BIN_EXE_lightwidget");
const ADMIN: &str = "transparency-admin-token-0123";

/// One HTTP/1.1 exchange: (status, body).
fn http(addr: &str, method: &str, path: &str, token: Option<&str>, body: &str) -> (u16, String) {
    let mut s = std::net::TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(15)))
        .expect("timeout");
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\n{auth}Content-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .expect("write");
    let mut out = String::new();
    s.read_to_string(&mut out).expect("read");
    let status = out
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = out.split_once("\r\n\r\n").map(|b| b.1).unwrap_or_default();
    (status, body.to_owned())
}

fn json(body: &str) -> serde_json::Value {
    serde_json::from_str(body).unwrap_or_else(|_| panic!("not JSON: {body}"))
}

/// Signs a user in: the position of the sign-in.
fn sign_in(addr: &str, name: &str) -> (String, u64) {
    let (status, body) = http(
        addr,
        "POST",
        "/v1/auth/instagram",
        None,
        &format!(r#"{{"code":"demo:{name}"}}"#),
    );
    assert_eq!(status, 200, "{body}");
    let v = json(&body);
    (
        v["token"].as_str().expect("token").to_owned(),
        v["position"].as_u64().expect("position"),
    )
}

/// The signed checkpoint once it covers `position`: (size, note).
fn checkpoint(addr: &str, position: u64) -> (u64, String) {
    let (status, note) = http(
        addr,
        "GET",
        &format!("/v1/log/checkpoint?min_position={position}"),
        None,
        "",
    );
    assert_eq!(status, 200, "{note}");
    let size = note
        .lines()
        .nth(1)
        .and_then(|l| l.parse().ok())
        .expect("a size line");
    (size, note)
}

/// The log's head position.
fn head(addr: &str) -> u64 {
    let (_, body) = http(addr, "GET", "/readyz", None, "");
    json(&body)["head_position"].as_u64().unwrap_or(0)
}

/// Runs the CLI: its exit code and its output (stdout then stderr).
fn lightwidget(args: &[&str], env: &[(&str, &str)]) -> (i32, String) {
    let out = Command::new(BIN)
        .args(args)
        .env_clear()
        .envs(env.iter().copied())
        .output()
        .expect("run");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code().unwrap_or(-1), text)
}

/// `lightwidget witness check` on a state file, with evidence into `evidence` if given.
fn witness_check(state: &str, evidence: Option<&Path>, env: &[(&str, &str)]) -> (i32, String) {
    let mut args = vec!["witness", "check", "--state", state];
    let dir = evidence.map(|d| d.to_str().expect("path").to_owned());
    if let Some(d) = &dir {
        args.extend(["--evidence", d.as_str()]);
    }
    lightwidget(&args, env)
}

/// `lightwidget witness verify-evidence DIR --vkey VKEY`.
fn verify_evidence(dir: &Path, vkey: &str) -> (i32, String) {
    lightwidget(
        &[
            "witness",
            "verify-evidence",
            dir.to_str().expect("path"),
            "--vkey",
            vkey,
        ],
        &[],
    )
}

/// Polls `/readyz` until it answers `status` (true) or 10 s pass (false).
fn readyz_becomes(addr: &str, status: u16) -> (bool, String) {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let (s, body) = http(addr, "GET", "/readyz", None, "");
        if s == status {
            return (true, body);
        }
        if std::time::Instant::now() >= deadline {
            return (false, body);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[derive(Clone, Copy, Debug)]
enum Store {
    Postgres,
    Sqlite,
}

/// A store the binary runs on, and how to back it up and restore it behind its back.
struct Under {
    store: Store,
    cwd: tempfile::TempDir,
    db: Option<lightwidget_testkit::TestDatabase>,
    settings: Vec<(&'static str, String)>,
    rt: tokio::runtime::Runtime,
}

impl Under {
    fn new(store: Store) -> Under {
        let rt = tokio::runtime::Runtime::new().expect("runtime");
        let cwd = tempfile::tempdir().expect("tempdir");
        // One port across restarts: the witness keeps the log's URL.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let mut settings = vec![
            ("LW_LISTEN", format!("127.0.0.1:{port}")),
            ("LW_ADMIN_TOKEN", ADMIN.to_owned()),
            ("LW_CLOCK", "manual".to_owned()),
        ];
        let db = match store {
            Store::Postgres => {
                let db = rt.block_on(lightwidget_testkit::TestDatabase::create());
                settings.push(("LW_DATABASE_URL", db.url.clone()));
                settings.push(("LW_MASTER_KEY", MasterKey::generate().to_base64()));
                Some(db)
            }
            Store::Sqlite => None,
        };
        Under {
            store,
            cwd,
            db,
            settings,
            rt,
        }
    }

    fn data(&self) -> PathBuf {
        self.cwd.path().join("data")
    }

    fn serve(&self) -> (std::process::Child, String) {
        let (child, addr, _) = serve_with(self.cwd.path(), &self.settings);
        (child, addr)
    }

    fn admin_sql(&self, sql: &str) {
        let admin = lightwidget_testkit::admin_url();
        self.rt.block_on(async {
            let (client, conn) = tokio_postgres::connect(&admin, tokio_postgres::NoTls)
                .await
                .expect("connect");
            let driver = tokio::spawn(conn);
            client.batch_execute(sql).await.expect(sql);
            drop(client);
            let _ = driver.await;
        });
    }

    /// Copies the stopped store aside.
    fn backup(&self) {
        match self.store {
            Store::Postgres => {
                let name = &self.db.as_ref().expect("db").name;
                self.admin_sql(&format!("CREATE DATABASE {name}_bak TEMPLATE {name}"));
            }
            Store::Sqlite => {
                let to = self.cwd.path().join("backup");
                std::fs::create_dir_all(&to).expect("backup dir");
                for f in sqlite_files(&self.data()) {
                    std::fs::copy(&f, to.join(f.file_name().expect("name"))).expect("copy");
                }
            }
        }
    }

    /// Puts the backup back in place of the stopped store.
    fn restore(&self) {
        match self.store {
            Store::Postgres => {
                let name = &self.db.as_ref().expect("db").name;
                self.admin_sql(&format!("DROP DATABASE {name}"));
                self.admin_sql(&format!("CREATE DATABASE {name} TEMPLATE {name}_bak"));
                self.admin_sql(&format!("DROP DATABASE {name}_bak"));
            }
            Store::Sqlite => {
                for f in sqlite_files(&self.data()) {
                    std::fs::remove_file(f).expect("remove");
                }
                let from = self.cwd.path().join("backup");
                for f in std::fs::read_dir(&from).expect("backup") {
                    let f = f.expect("entry").path();
                    std::fs::copy(&f, self.data().join(f.file_name().expect("name")))
                        .expect("copy back");
                }
            }
        }
    }

    /// Rewrites the actor of the event at `position` and recomputes the chain after it (as
    /// an operator with write access could), leaving the Merkle tree as it was.
    fn rewrite_event(&self, position: u64) {
        use lightwidget_store::{chain, EventStore};
        let rewritten: Vec<lightwidget_store::StoredEvent> = self.rt.block_on(async {
            let events = match self.store {
                Store::Postgres => {
                    let url = &self.db.as_ref().expect("db").url;
                    let key = self
                        .settings
                        .iter()
                        .find(|(k, _)| *k == "LW_MASTER_KEY")
                        .map(|(_, v)| MasterKey::from_base64(v).expect("key"))
                        .expect("key");
                    let store = lightwidget_store::postgres::PgEventStore::connect(
                        url,
                        key,
                        std::sync::Arc::new(lightwidget_store::SystemClock),
                        Default::default(),
                    )
                    .await
                    .expect("connect");
                    store.read_all_raw(0, 100_000).await.expect("read")
                }
                Store::Sqlite => {
                    let key = std::fs::read_to_string(self.data().join("master.key"))
                        .expect("master key");
                    let store = lightwidget_store::embedded::SqliteEventStore::open(
                        &self.data(),
                        MasterKey::from_base64(&key).expect("key"),
                        std::sync::Arc::new(lightwidget_store::SystemClock),
                        Default::default(),
                    )
                    .expect("open");
                    store.read_all_raw(0, 100_000).await.expect("read")
                }
            };
            let mut prev = events[position as usize - 2].hash;
            let mut out = Vec::new();
            for mut e in events.into_iter().skip(position as usize - 1) {
                if e.position == position {
                    e.actor = "rewritten-by-the-operator".into();
                }
                e.prev_hash = prev;
                e.hash = chain::chain_hash(&prev, &e);
                prev = e.hash;
                out.push(e);
            }
            out
        });
        let last = rewritten.last().expect("events").clone();
        match self.store {
            Store::Postgres => {
                let url = self.db.as_ref().expect("db").url.clone();
                self.rt.block_on(async {
                    let (client, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
                        .await
                        .expect("connect");
                    let driver = tokio::spawn(conn);
                    client
                        .batch_execute("ALTER TABLE events DISABLE TRIGGER USER")
                        .await
                        .expect("disable triggers");
                    for e in &rewritten {
                        let (prev, hash) = (e.prev_hash.to_vec(), e.hash.to_vec());
                        let position = e.position as i64;
                        let params: [&(dyn tokio_postgres::types::ToSql + Sync); 4] =
                            [&e.actor, &prev, &hash, &position];
                        client
                            .execute(
                                "UPDATE events SET actor = $1, prev_hash = $2, hash = $3 \
                                 WHERE position = $4",
                                &params,
                            )
                            .await
                            .expect("update");
                    }
                    client
                        .execute(
                            "UPDATE log_head SET hash = $1 WHERE id = 1",
                            &[&last.hash.as_slice()],
                        )
                        .await
                        .expect("head");
                    client
                        .batch_execute("ALTER TABLE events ENABLE TRIGGER USER")
                        .await
                        .expect("enable triggers");
                    drop(client);
                    let _ = driver.await;
                });
            }
            Store::Sqlite => {
                let c = rusqlite::Connection::open(self.data().join("ledger.db")).expect("open");
                c.execute_batch("DROP TRIGGER events_no_update")
                    .expect("drop trigger");
                for e in &rewritten {
                    c.execute(
                        "UPDATE events SET actor = ?1, prev_hash = ?2, hash = ?3 WHERE position = ?4",
                        rusqlite::params![
                            e.actor,
                            e.prev_hash.as_slice(),
                            e.hash.as_slice(),
                            e.position as i64
                        ],
                    )
                    .expect("update");
                }
                c.execute(
                    "UPDATE log_head SET hash = ?1 WHERE id = 1",
                    [last.hash.as_slice()],
                )
                .expect("head");
            }
        }
    }
}

fn sqlite_files(dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(dir)
        .expect("data dir")
        .map(|e| e.expect("entry").path())
        .filter(|p| {
            let name = p.file_name().and_then(|n| n.to_str()).unwrap_or_default();
            name.starts_with("ledger.db") || name.starts_with("views.db")
        })
        .collect()
}

fn a_restored_backup_is_caught(store: Store) {
    let under = Under::new(store);
    let (server, addr) = under.serve();
    let mut last = 0;
    for i in 0..3 {
        last = sign_in(&addr, &format!("early_{i}")).1;
    }
    checkpoint(&addr, last);
    terminate(server);
    under.backup();

    let (server, addr) = under.serve();
    for i in 0..3 {
        last = sign_in(&addr, &format!("later_{i}")).1;
    }
    let (held, _) = checkpoint(&addr, last);
    let (_, vkey) = http(&addr, "GET", "/v1/log/key", None, "");
    let vkey = vkey.trim().to_owned();
    let state = under.cwd.path().join("witness.json");
    let state_arg = state.to_str().expect("path");
    let url = format!("http://{addr}");
    let (code, out) = lightwidget(
        &[
            "witness", "init", "--url", &url, "--vkey", &vkey, "--state", state_arg,
        ],
        &[],
    );
    assert_eq!(code, 0, "{out}");
    terminate(server);

    // The backup comes back; the server's own witness file stays: it refuses to sign.
    under.restore();
    let (server, addr) = under.serve();
    let (refused, body) = readyz_becomes(&addr, 503);
    assert!(refused, "readyz: {body}");
    assert!(
        json(&body)["detail"]
            .as_str()
            .is_some_and(|d| d.starts_with("log:")),
        "{body}"
    );
    let (_, note) = http(&addr, "GET", "/v1/log/checkpoint", None, "");
    let served: u64 = note
        .lines()
        .nth(1)
        .and_then(|l| l.parse().ok())
        .expect("size");
    assert!(
        served < held,
        "it serves the old checkpoint, not a new one: {note}"
    );
    terminate(server);

    // The witness file deleted too: the server signs the restored log, and the witness
    // meets a rollback.
    std::fs::remove_file(under.data().join("log.checkpoint")).expect("remove the witness file");
    let (server, addr) = under.serve();
    let restored_head = head(&addr);
    let (size, _) = checkpoint(&addr, restored_head);
    assert!(size < held);
    let before = std::fs::read(&state).expect("state");
    let rollback = under.cwd.path().join("rollback");
    let (code, out) = witness_check(state_arg, Some(&rollback), &[]);
    assert_eq!(code, 4, "{out}");
    assert_eq!(std::fs::read(&state).expect("state"), before);
    // A smaller checkpoint of a prefix proves nothing to a third party.
    let (code, out) = verify_evidence(&rollback, &vkey);
    assert_eq!(code, 2, "{out}");

    // The restored log grows past the size held: a fork, proven.
    let mut i = 0;
    while last <= held {
        last = sign_in(&addr, &format!("forked_{i}")).1;
        i += 1;
    }
    checkpoint(&addr, last);
    let fork = under.cwd.path().join("fork");
    let (code, out) = witness_check(state_arg, Some(&fork), &[]);
    assert_eq!(code, 3, "{out}");
    assert_eq!(std::fs::read(&state).expect("state"), before);
    for f in ["old.checkpoint", "new.checkpoint", "proof.txt"] {
        assert!(fork.join(f).exists(), "{f}");
    }
    let (code, out) = verify_evidence(&fork, &vkey);
    assert_eq!(code, 0, "{out}");
    // A forged copy: the new checkpoint's root changed by one character.
    let note = std::fs::read_to_string(fork.join("new.checkpoint")).expect("note");
    let root = note.lines().nth(2).expect("root").to_owned();
    let flipped = format!(
        "{}{}",
        if root.starts_with('A') { 'B' } else { 'A' },
        &root[1..]
    );
    std::fs::write(fork.join("new.checkpoint"), note.replace(&root, &flipped)).expect("forge");
    let (code, out) = verify_evidence(&fork, &vkey);
    assert_eq!(code, 2, "{out}");
    terminate(server);
}

fn a_rewritten_event_is_caught_by_audit_events(store: Store) {
    let under = Under::new(store);
    let (server, addr) = under.serve();
    let mut last = 0;
    for i in 0..4 {
        last = sign_in(&addr, &format!("honest_{i}")).1;
    }
    checkpoint(&addr, last);
    let (_, vkey) = http(&addr, "GET", "/v1/log/key", None, "");
    let state = under.cwd.path().join("witness.json");
    let state_arg = state.to_str().expect("path");
    let url = format!("http://{addr}");
    let auditor = [("LW_AUDITOR_TOKEN", ADMIN)];
    let (code, out) = lightwidget(
        &[
            "witness",
            "init",
            "--url",
            &url,
            "--vkey",
            vkey.trim(),
            "--state",
            state_arg,
        ],
        &[],
    );
    assert_eq!(code, 0, "{out}");
    let (code, out) = lightwidget(
        &["witness", "check", "--state", state_arg, "--audit-events"],
        &auditor,
    );
    assert_eq!(code, 0, "{out}");
    terminate(server);

    under.rewrite_event(3);
    let (server, addr) = under.serve();
    // The chain holds: the server's own verification sees nothing.
    let (status, body) = http(&addr, "GET", "/v1/audit/verify", Some(ADMIN), "");
    assert_eq!(status, 200, "{body}");
    assert_eq!(json(&body)["ok"], true, "{body}");
    let before = std::fs::read(&state).expect("state");
    let (code, out) = lightwidget(
        &["witness", "check", "--state", state_arg, "--audit-events"],
        &auditor,
    );
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("do not rebuild the signed root"), "{out}");
    assert_eq!(std::fs::read(&state).expect("state"), before);
    // Checking heads only, the rewrite passes unseen.
    let (code, out) = lightwidget(&["witness", "check", "--state", state_arg], &[]);
    assert_eq!(code, 0, "{out}");
    terminate(server);
}

fn a_receipt_verifies_with_the_cli(store: Store) {
    let under = Under::new(store);
    let (server, addr) = under.serve();
    let (token, _) = sign_in(&addr, "leaving_owner");
    let (status, body) = http(&addr, "DELETE", "/v1/me", Some(&token), "");
    assert_eq!(status, 202, "{body}");
    let url = json(&body)["erasure_receipt_url"]
        .as_str()
        .expect("url")
        .to_owned();
    let days = 91 * 86_400;
    let (status, _) = http(
        &addr,
        "POST",
        "/v1/admin/clock",
        Some(ADMIN),
        &format!(r#"{{"advance_seconds":{days}}}"#),
    );
    assert_eq!(status, 200);
    let (status, body) = http(&addr, "POST", "/v1/admin/retention/run", Some(ADMIN), "{}");
    assert_eq!(status, 200, "{body}");
    checkpoint(&addr, json(&body)["position"].as_u64().expect("position"));
    let (status, receipt) = http(&addr, "GET", &url, None, "");
    assert_eq!(status, 200, "{receipt}");
    let (_, vkey) = http(&addr, "GET", "/v1/log/key", None, "");
    let file = under.cwd.path().join("erasure.tlog-proof");
    std::fs::write(&file, &receipt).expect("write");
    let file_arg = file.to_str().expect("path");
    let (code, out) = lightwidget(&["receipt", "verify", file_arg, "--vkey", vkey.trim()], &[]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("AccountPurged"), "{out}");
    // More appends; today's log still extends the receipt's checkpoint.
    let last = sign_in(&addr, "after_the_receipt").1;
    checkpoint(&addr, last);
    let online = format!("http://{addr}");
    let (code, out) = lightwidget(
        &[
            "receipt",
            "verify",
            file_arg,
            "--vkey",
            vkey.trim(),
            "--online",
            &online,
        ],
        &[],
    );
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("extends"), "{out}");
    // Altered: the index moved by one.
    let index = receipt
        .lines()
        .find_map(|l| l.strip_prefix("index "))
        .expect("index")
        .to_owned();
    let moved = (index.parse::<u64>().expect("n") - 1).to_string();
    std::fs::write(
        &file,
        receipt.replace(&format!("index {index}\n"), &format!("index {moved}\n")),
    )
    .expect("alter");
    let (code, out) = lightwidget(&["receipt", "verify", file_arg, "--vkey", vkey.trim()], &[]);
    assert_eq!(code, 2, "{out}");
    terminate(server);
    // The private key is in its file and nowhere in the store's files.
    let private = std::fs::read_to_string(under.data().join("log.key")).expect("key file");
    // PRIVATE+KEY+<name>+<id>+<base64 key> (the base64 may hold '+' too).
    let secret = private
        .trim()
        .strip_prefix("PRIVATE+KEY+")
        .and_then(|rest| rest.splitn(3, '+').nth(2))
        .expect("a private key line")
        .to_owned();
    assert!(
        private.starts_with("PRIVATE+KEY+") && secret.len() > 40,
        "{private}"
    );
    if let Store::Sqlite = store {
        for f in sqlite_files(&under.data()) {
            let bytes = std::fs::read(&f).expect("read");
            assert!(
                !bytes.windows(secret.len()).any(|w| w == secret.as_bytes()),
                "the log key is in {}",
                f.display()
            );
        }
    }
}

mod postgres {
    use super::*;
    #[test]
    fn a_restored_backup_is_caught() {
        super::a_restored_backup_is_caught(Store::Postgres)
    }
    #[test]
    fn a_rewritten_event_is_caught_by_audit_events() {
        super::a_rewritten_event_is_caught_by_audit_events(Store::Postgres)
    }
    #[test]
    fn a_receipt_verifies_with_the_cli() {
        super::a_receipt_verifies_with_the_cli(Store::Postgres)
    }
}

mod sqlite {
    use super::*;
    #[test]
    fn a_restored_backup_is_caught() {
        super::a_restored_backup_is_caught(Store::Sqlite)
    }
    #[test]
    fn a_rewritten_event_is_caught_by_audit_events() {
        super::a_rewritten_event_is_caught_by_audit_events(Store::Sqlite)
    }
    #[test]
    fn a_receipt_verifies_with_the_cli() {
        super::a_receipt_verifies_with_the_cli(Store::Sqlite)
    }
}
