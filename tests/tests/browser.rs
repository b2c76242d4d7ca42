//! The console in a real browser (issue 24): headless Chromium from Debian's packages, driven
//! over WebDriver by fantoccini, against the real server on both backends. Each page visited
//! is checked with axe-core (no serious or critical finding) and saved as a screenshot under
//! `target/console-screenshots/`.
//!
//! Needs `chromedriver` and `chromium` (`LW_CHROMEDRIVER`, `LW_CHROMIUM` name others) and
//! axe-core's `axe.min.js` (`LW_AXE_JS`; `scripts/test.sh` installs all three when missing).
//! Without them the tests fail, naming what is missing: they never pass by skipping.

use fantoccini::{Client, ClientBuilder, Locator};
use lightwidget_tests::{both, Backend, TestApp, ADMIN_TOKEN};
use serde_json::{json, Value};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn workspace() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace")
        .to_owned()
}

fn tool(var: &str, default: &str) -> String {
    let path = std::env::var(var).unwrap_or_else(|_| default.to_owned());
    assert!(
        std::path::Path::new(&path).exists(),
        "{path} is missing: install Debian's chromium and chromium-driver, and axe-core \
         (scripts/test.sh does), or set {var}"
    );
    path
}

/// A chromedriver on a free port, killed when dropped.
pub struct Driver {
    child: Child,
    url: String,
    _profile: tempfile::TempDir,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts chromedriver and a headless Chromium session in it.
pub async fn browser() -> (Driver, Client) {
    let driver = tool("LW_CHROMEDRIVER", "/usr/bin/chromedriver");
    let chromium = tool("LW_CHROMIUM", "/usr/bin/chromium");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("port")
        .local_addr()
        .expect("address")
        .port();
    let child = Command::new(driver)
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("chromedriver");
    let profile = tempfile::tempdir().expect("profile");
    let driver = Driver {
        child,
        url: format!("http://127.0.0.1:{port}"),
        _profile: profile,
    };
    // Ready once it accepts connections.
    let started = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "chromedriver did not listen"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".into(),
        json!({
            "binary": chromium,
            "args": [
                "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--disable-quic", "--no-first-run", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--window-size=1280,900",
                format!("--user-data-dir={}", driver._profile.path().display()),
            ],
        }),
    );
    let client = ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
        .capabilities(caps)
        .connect(&driver.url)
        .await
        .expect("a Chromium session");
    (driver, client)
}

/// A page as a person sees it: the text of every element matching `css`.
async fn texts(c: &Client, css: &str) -> Vec<String> {
    let mut out = Vec::new();
    for e in c.find_all(Locator::Css(css)).await.expect("find") {
        out.push(e.text().await.expect("text"));
    }
    out
}

/// axe-core on the current page: its serious and critical violations (rule ids).
pub async fn accessibility(c: &Client) -> Vec<String> {
    let axe = std::fs::read_to_string(tool(
        "LW_AXE_JS",
        &workspace()
            .join("target/axe/node_modules/axe-core/axe.min.js")
            .display()
            .to_string(),
    ))
    .expect("axe.min.js");
    c.execute(&axe, vec![]).await.expect("axe loaded");
    let found = c
        .execute_async(
            "const done = arguments[arguments.length - 1];
             axe.run(document).then(r => done(r.violations
                 .filter(v => v.impact === 'serious' || v.impact === 'critical')
                 .map(v => v.id + ': ' + v.nodes.map(n => n.target.join(' ')).join(', '))));",
            vec![],
        )
        .await
        .expect("axe ran");
    serde_json::from_value(found).expect("violations")
}

/// Saves a screenshot of the current page under `target/<dir>/`.
pub async fn screenshot(c: &Client, dir: &str, backend: Backend, name: &str) {
    let dir = workspace().join("target").join(dir);
    std::fs::create_dir_all(&dir).expect("screenshot dir");
    let png = c.screenshot().await.expect("screenshot");
    std::fs::write(
        dir.join(format!("{backend:?}-{name}.png").to_lowercase()),
        png,
    )
    .expect("screenshot written");
}

/// Saves a screenshot of the current console page and checks it with axe-core.
async fn look(c: &Client, backend: Backend, name: &str) {
    screenshot(c, "console-screenshots", backend, name).await;
    let found = accessibility(c).await;
    assert!(found.is_empty(), "{name}: {found:?}");
}

async fn sign_in(c: &Client, app: &TestApp, token: &str) {
    c.goto(&app.url("/console/login")).await.expect("login");
    c.find(Locator::Id("token"))
        .await
        .expect("token field")
        .send_keys(token)
        .await
        .expect("typed");
    submit(c, "form[action='/console/login'] button").await;
}

/// Clicks a form's button and waits for the page it leads to.
async fn submit(c: &Client, css: &str) {
    let before = c.find(Locator::Css("html")).await.expect("page");
    c.find(Locator::Css(css))
        .await
        .unwrap_or_else(|e| panic!("{css}: {e}"))
        .click()
        .await
        .expect("clicked");
    left(&before).await;
}

/// Waits until the page `before` belongs to is gone: its root goes stale once the next page
/// is there.
async fn left(before: &fantoccini::elements::Element) {
    let started = Instant::now();
    while before.tag_name().await.is_ok() {
        assert!(started.elapsed() < Duration::from_secs(10), "no new page");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

async fn states(c: &Client) -> Vec<String> {
    texts(c, "td.state").await
}

/// The whole round as compliance staff would do it in a browser: sign in, place a hold on a
/// deleted account and see its items turn `held`, see a sweep keep them, release the hold,
/// see the next sweep purge them; an auditor verifies the chain; a CSRF-less POST from the
/// page's own origin is refused; a role without rights gets 403 pages.
async fn the_console_in_a_browser(backend: Backend) {
    let app = lightwidget_tests::spawn_app(backend).await;
    let (owner, account, _) = app.sign_in("alice").await;
    let deleted = app.delete("/v1/me", Some(&owner)).await.expect(202);
    let (_driver, c) = browser().await;

    // The admin holds every staff role, and its token does not expire as the clock moves.
    // Signed in with the keyboard alone: Tab reaches the token field, Enter sends the form,
    // and the focused field is outlined.
    c.goto(&app.url("/console/login")).await.expect("login");
    let body = c.find(Locator::Css("body")).await.expect("body");
    body.send_keys(&fantoccini::key::Key::Tab)
        .await
        .expect("tab");
    let focused = c.active_element().await.expect("focus");
    assert_eq!(
        focused.attr("id").await.expect("id").as_deref(),
        Some("token")
    );
    let outline = c
        .execute(
            "const s = getComputedStyle(document.activeElement);
             return [s.outlineStyle, parseFloat(s.outlineWidth)];",
            vec![],
        )
        .await
        .expect("style");
    assert!(
        outline[0] == "solid" && outline[1].as_f64().unwrap_or(0.0) >= 2.0,
        "a visible focus: {outline}"
    );
    let before = c.find(Locator::Css("html")).await.expect("page");
    focused
        .send_keys(&format!("{ADMIN_TOKEN}{}", fantoccini::key::Key::Enter))
        .await
        .expect("typed");
    left(&before).await;
    assert!(c.current_url().await.expect("url").path() == "/console");
    look(&c, backend, "home").await;
    let subject = format!(
        "/console/subjects/{account}?min_position={}",
        deleted["position"]
    );
    c.goto(&app.url(&subject)).await.expect("subject");
    assert!(states(&c).await.iter().all(|s| s != "held"));
    look(&c, backend, "subject").await;
    c.find(Locator::Id("reason"))
        .await
        .expect("reason")
        .send_keys("a court order")
        .await
        .expect("typed");
    c.find(Locator::Id("case_ref"))
        .await
        .expect("case_ref")
        .send_keys("<b>C-1</b>")
        .await
        .expect("typed");
    submit(&c, "form[action='/console/holds'] button").await;
    let held = states(&c).await;
    assert!(held.iter().any(|s| s == "held"), "{held:?}");
    assert!(texts(&c, "td")
        .await
        .iter()
        .any(|t| t.contains("<b>C-1</b>")));
    look(&c, backend, "subject-held").await;

    // Past the quarantine, a sweep keeps what the hold holds.
    app.advance(chrono::Duration::days(91)).await;
    let kept = app.sweep().await;
    c.goto(&app.url(&format!(
        "/console/subjects/{account}?min_position={}",
        kept["position"]
    )))
    .await
    .expect("subject");
    let kept = states(&c).await;
    assert!(kept.iter().any(|s| s == "held"), "{kept:?}");
    assert!(kept.iter().all(|s| s != "purged"), "{kept:?}");

    // The retention queue shows them too, filtered by state.
    c.goto(&app.url(&format!(
        "/console/retention?account_id={account}&state=held"
    )))
    .await
    .expect("queue");
    assert!(!states(&c).await.is_empty());
    look(&c, backend, "retention").await;

    // A form posted without the CSRF token, from the console's own page, with the cookie:
    // a 403 page, and no second hold.
    c.goto(&app.url(&format!("/console/subjects/{account}")))
        .await
        .expect("subject");
    let before = c.find(Locator::Css("html")).await.expect("page");
    c.execute(
        "const f = document.createElement('form');
         f.method = 'post'; f.action = '/console/holds';
         for (const [k, v] of Object.entries({account_id: arguments[0], reason: 'x', case_ref: 'y'})) {
             const i = document.createElement('input');
             i.type = 'hidden'; i.name = k; i.value = v; f.appendChild(i);
         }
         document.body.appendChild(f); f.submit();",
        vec![json!(account)],
    )
    .await
    .expect("posted");
    left(&before).await;
    assert_eq!(texts(&c, "h1").await, vec!["Forbidden".to_owned()]);
    c.goto(&app.url(&format!("/console/subjects/{account}")))
        .await
        .expect("subject");
    let mut holds = Vec::new();
    for f in c
        .find_all(Locator::Css("form[action$='/release']"))
        .await
        .expect("forms")
    {
        holds.push(f.attr("action").await.expect("action"));
    }
    holds.sort();
    holds.dedup();
    assert_eq!(holds.len(), 1, "{holds:?}");

    // Released, then swept: purged.
    submit(&c, "form[action$='/release'] button").await;
    assert!(states(&c).await.iter().all(|s| s != "held"));
    let swept = app.sweep().await;
    c.goto(&app.url(&format!(
        "/console/subjects/{account}?min_position={}",
        swept["position"]
    )))
    .await
    .expect("subject");
    let after = states(&c).await;
    assert!(after.iter().any(|s| s == "purged"), "{after:?}");
    look(&c, backend, "subject-purged").await;
    c.goto(&app.url("/console/purges")).await.expect("purges");
    assert!(!texts(&c, "tbody tr").await.is_empty());
    look(&c, backend, "purges").await;

    // The chain verifies, with the API's head.
    c.goto(&app.url("/console/audit")).await.expect("audit");
    submit(&c, "form[action='/console/audit'] button").await;
    let result = c
        .find(Locator::Id("verify-result"))
        .await
        .expect("result")
        .text()
        .await
        .expect("text");
    assert!(result.contains("verifies"), "{result}");
    let api: Value = app
        .get("/v1/audit/verify", Some(ADMIN_TOKEN))
        .await
        .expect(200);
    let head = c
        .find(Locator::Id("head-hash"))
        .await
        .expect("head")
        .text()
        .await
        .expect("text");
    assert_eq!(head, api["head_hash"].as_str().expect("hash"));
    look(&c, backend, "audit").await;

    c.goto(&app.url("/console/breaches"))
        .await
        .expect("breaches");
    look(&c, backend, "breaches").await;
    c.goto(&app.url(&format!("/console/security?account_id={account}")))
        .await
        .expect("security");
    look(&c, backend, "security").await;

    // Signed out, then in as an auditor: compliance's pages are 403.
    submit(&c, "form[action='/console/logout'] button").await;
    assert_eq!(c.current_url().await.expect("url").path(), "/console/login");
    look(&c, backend, "login").await;
    let auditor = app.staff("auditor").await;
    sign_in(&c, &app, &auditor).await;
    c.goto(&app.url("/console/retention")).await.expect("queue");
    assert_eq!(texts(&c, "h1").await, vec!["Forbidden".to_owned()]);
    look(&c, backend, "forbidden").await;
    c.close().await.expect("closed");
}

/// An owner in a browser: signs in with a (demo) Instagram code, sees their widget and the
/// breach that concerns them, finds the export, deletes the account and reads the date its
/// data goes, restores it, and signs out.
async fn an_owner_in_a_browser(backend: Backend) {
    let app = lightwidget_tests::spawn_app(backend).await;
    let (token, account, _) = app.sign_in("dana").await;
    let (_, at) = app.create_widget(&token, "Dana's <feed>").await;
    let compliance = app.staff("compliance").await;
    let detected = {
        use lightwidget_store::Clock;
        app.clock.now() - chrono::Duration::hours(1)
    };
    let breach = app
        .post(
            "/v1/compliance/breaches",
            Some(&compliance),
            json!({"description": "a backup tape lost", "detected_at": detected.to_rfc3339(),
                   "categories": ["profile"], "affected_accounts": [account]}),
        )
        .await
        .expect(201);
    let (_driver, c) = browser().await;
    c.goto(&app.url("/account/login")).await.expect("login");
    look(&c, backend, "account-login").await;
    c.find(Locator::Id("code"))
        .await
        .expect("code field")
        .send_keys("demo:dana")
        .await
        .expect("typed");
    submit(&c, "form[action='/account/login'] button").await;
    assert_eq!(c.current_url().await.expect("url").path(), "/account");
    let at = at.max(breach["position"].as_u64().expect("position"));
    c.goto(&app.url(&format!("/account?min_position={at}")))
        .await
        .expect("account");
    let rows = texts(&c, "tbody tr").await;
    assert!(rows.iter().any(|r| r.contains("Dana's <feed>")), "{rows:?}");
    assert!(texts(&c, "li")
        .await
        .iter()
        .any(|t| t.contains("a backup tape lost")));
    let export = c
        .find(Locator::Css("a[href='/account/export']"))
        .await
        .expect("export link");
    assert!(export.attr("download").await.expect("attr").is_some());
    look(&c, backend, "account").await;

    submit(&c, "form[action='/account/delete'] button").await;
    let deleted = c
        .find(Locator::Id("deleted"))
        .await
        .expect("deleted")
        .text()
        .await
        .expect("text");
    let receipt = c
        .find(Locator::Id("receipt"))
        .await
        .expect("receipt")
        .text()
        .await
        .expect("text");
    assert!(receipt.starts_with("/v1/log/receipts/"), "{receipt}");
    look(&c, backend, "account-deleted").await;
    let before = c.find(Locator::Css("html")).await.expect("page");
    c.find(Locator::LinkText("Back to my account"))
        .await
        .expect("link")
        .click()
        .await
        .expect("clicked");
    left(&before).await;
    let status = texts(&c, "#account-status").await;
    assert_eq!(status, vec!["quarantined".to_owned()]);
    let until = texts(&c, "#account-quarantine strong").await;
    assert!(
        until.len() == 1 && deleted.contains(&until[0]),
        "{until:?} in {deleted}"
    );
    look(&c, backend, "account-quarantined").await;
    submit(&c, "form[action='/account/restore'] button").await;
    assert_eq!(
        texts(&c, "#account-status").await,
        vec!["active".to_owned()]
    );
    submit(&c, "form[action='/account/logout'] button").await;
    assert_eq!(c.current_url().await.expect("url").path(), "/account/login");
    assert_eq!(app.get("/v1/me", Some(&token)).await.status, 200);
    c.close().await.expect("closed");
}

both!(the_console_in_a_browser, an_owner_in_a_browser);
