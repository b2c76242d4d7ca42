//! The staff console over real HTTP on both backends (issue 24): sign-in with a token into an
//! `HttpOnly`, `SameSite=Strict` session cookie, CSRF on every form, the API's 403s as
//! pages, and the pages over the API's own queries and use cases.

use lightwidget_tests::{both, Backend, TestApp, ADMIN_TOKEN};
use serde_json::json;

/// A browser of sorts: no redirects followed, the session's cookie kept by hand.
struct Browser<'a> {
    app: &'a TestApp,
    client: reqwest::Client,
    cookies: Vec<(String, String)>,
}

struct Answer {
    status: u16,
    location: Option<String>,
    set_cookies: Vec<String>,
    content_type: String,
    body: String,
}

impl<'a> Browser<'a> {
    fn new(app: &'a TestApp) -> Self {
        Browser {
            app,
            client: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .expect("client"),
            cookies: Vec::new(),
        }
    }

    async fn send(&mut self, r: reqwest::RequestBuilder) -> Answer {
        let cookie = self
            .cookies
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; ");
        let r = if cookie.is_empty() {
            r
        } else {
            r.header("cookie", cookie)
        };
        let response = r.send().await.expect("request");
        let header = |name: &str| {
            response
                .headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        let location = header("location");
        let content_type = header("content-type").unwrap_or_default();
        let set_cookies: Vec<String> = response
            .headers()
            .get_all("set-cookie")
            .iter()
            .filter_map(|v| v.to_str().ok().map(str::to_owned))
            .collect();
        for c in &set_cookies {
            let pair = c.split(';').next().unwrap_or_default();
            if let Some((k, v)) = pair.split_once('=') {
                self.cookies.retain(|(n, _)| n != k);
                if !v.is_empty() {
                    self.cookies.push((k.to_owned(), v.to_owned()));
                }
            }
        }
        Answer {
            status: response.status().as_u16(),
            location,
            set_cookies,
            content_type,
            body: response.text().await.expect("body"),
        }
    }

    async fn get(&mut self, path: &str) -> Answer {
        let r = self.client.get(self.app.url(path));
        self.send(r).await
    }

    async fn post(&mut self, path: &str, form: &[(&str, &str)]) -> Answer {
        let body = form
            .iter()
            .map(|(k, v)| format!("{}={}", enc(k), enc(v)))
            .collect::<Vec<_>>()
            .join("&");
        let r = self
            .client
            .post(self.app.url(path))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body);
        self.send(r).await
    }

    /// Signs in with `token` through the sign-in form.
    async fn sign_in(&mut self, token: &str) -> Answer {
        let form = self.get("/console/login").await;
        assert_eq!(form.status, 200);
        let csrf = hidden(&form.body, "csrf");
        self.post("/console/login", &[("csrf", &csrf), ("token", token)])
            .await
    }

    /// The CSRF token the console's pages give this session's forms.
    async fn csrf(&mut self) -> String {
        let home = self.get("/console").await;
        assert_eq!(home.status, 200, "{}", home.body);
        hidden(&home.body, "csrf")
    }
}

fn enc(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The value of the first hidden input named `name`.
fn hidden(page: &str, name: &str) -> String {
    let at = page
        .find(&format!("name=\"{name}\" value=\""))
        .unwrap_or_else(|| panic!("no {name} in {page}"));
    let rest = &page[at + name.len() + 15..];
    rest[..rest.find('"').expect("end")].to_owned()
}

/// The state cells of a page's retention table.
fn states(page: &str) -> Vec<String> {
    page.match_indices("class=\"state state-")
        .map(|(i, _)| {
            let rest = &page[i + 19..];
            rest[..rest.find('"').expect("end")].to_owned()
        })
        .collect()
}

async fn signing_in_keeps_the_token_in_a_strict_http_only_cookie(backend: Backend) {
    let app = lightwidget_tests::spawn_app(backend).await;
    let compliance = app.staff("compliance").await;
    let (owner, _, _) = app.sign_in("alice").await;
    let mut b = Browser::new(&app);

    // Not signed in: to the sign-in page.
    let r = b.get("/console/retention").await;
    assert_eq!(
        (r.status, r.location.as_deref()),
        (303, Some("/console/login"))
    );

    // The sign-in form without its CSRF token, or with another, signs nobody in.
    let form = b.get("/console/login").await;
    assert!(
        form.content_type.starts_with("text/html"),
        "{}",
        form.content_type
    );
    let r = b.post("/console/login", &[("token", &compliance)]).await;
    assert_eq!(r.status, 403);
    assert!(r.set_cookies.iter().all(|c| !c.starts_with("lw_console=")));
    let r = b
        .post(
            "/console/login",
            &[("csrf", "forged"), ("token", &compliance)],
        )
        .await;
    assert_eq!(r.status, 403);

    // A wrong token and an owner's token are refused.
    assert_eq!(b.sign_in("not-a-token").await.status, 401);
    let r = b.sign_in(&owner).await;
    assert_eq!(r.status, 401);
    assert!(r.body.contains("owner"), "{}", r.body);

    let r = b.sign_in(&compliance).await;
    assert_eq!((r.status, r.location.as_deref()), (303, Some("/console")));
    let session = r
        .set_cookies
        .iter()
        .find(|c| c.starts_with("lw_console="))
        .expect("session cookie");
    for attribute in ["HttpOnly", "SameSite=Strict", "Path=/console"] {
        assert!(session.contains(attribute), "{session}");
    }
    assert!(!session.contains("Secure"), "plain HTTP: {session}");
    let home = b.get("/console").await;
    assert_eq!(home.status, 200);
    assert!(home.body.contains("compliance"));
    assert_eq!(
        home.body.matches("name=\"csrf\"").count(),
        1,
        "the sign-out form carries it"
    );

    // Behind a TLS proxy the cookie is Secure.
    let form = b
        .send(
            b.client
                .get(app.url("/console/login"))
                .header("x-forwarded-proto", "https"),
        )
        .await;
    assert!(form.set_cookies.iter().any(|c| c.contains("Secure")));

    // Signing out without the CSRF token does nothing; with it, the session ends.
    assert_eq!(b.post("/console/logout", &[]).await.status, 403);
    assert_eq!(b.get("/console").await.status, 200);
    let csrf = b.csrf().await;
    let r = b.post("/console/logout", &[("csrf", &csrf)]).await;
    assert_eq!(r.status, 303);
    assert_eq!(b.get("/console").await.status, 303);

    // A revoked token ends the session too.
    let mut b = Browser::new(&app);
    b.sign_in(&compliance).await;
    assert_eq!(b.get("/console").await.status, 200);
    let head = app.store.head().await.expect("head").position;
    let staff = app
        .get(&format!("/v1/staff?min_position={head}"), Some(ADMIN_TOKEN))
        .await
        .expect(200);
    let id = staff["staff"]
        .as_array()
        .expect("staff")
        .iter()
        .find(|s| s["role"] == "compliance")
        .and_then(|s| s["staff_id"].as_str())
        .expect("the compliance officer")
        .to_owned();
    app.delete(&format!("/v1/staff/{id}"), Some(ADMIN_TOKEN))
        .await
        .expect(200);
    let r = b.get("/console/retention").await;
    assert_eq!(
        (r.status, r.location.as_deref()),
        (303, Some("/console/login"))
    );
}

async fn a_hold_placed_from_the_console_turns_the_items_held_and_back(backend: Backend) {
    let app = lightwidget_tests::spawn_app(backend).await;
    let compliance = app.staff("compliance").await;
    let (_, account, position) = app.sign_in("alice").await;
    let mut b = Browser::new(&app);
    b.sign_in(&compliance).await;
    let page = b
        .get(&format!(
            "/console/retention?account_id={account}&min_position={position}"
        ))
        .await;
    assert_eq!(page.status, 200, "{}", page.body);
    let before = states(&page.body);
    assert!(!before.is_empty(), "{}", page.body);
    assert!(before.iter().all(|s| s != "held"), "{before:?}");
    let csrf = hidden(&page.body, "csrf");

    // Without the CSRF token, or with a wrong one: 403 and no hold.
    let hold = [
        ("account_id", account.as_str()),
        ("reason", "litigation"),
        ("case_ref", "<script>alert(1)</script>"),
    ];
    assert_eq!(b.post("/console/holds", &hold).await.status, 403);
    let mut forged = hold.to_vec();
    forged.push(("csrf", "0000"));
    assert_eq!(b.post("/console/holds", &forged).await.status, 403);
    let api = format!("/v1/compliance/retention?account_id={account}&state=held");
    let head = app.store.head().await.expect("head").position;
    let held = app
        .get(&format!("{api}&min_position={head}"), Some(&compliance))
        .await
        .expect(200);
    assert_eq!(held["items"].as_array().map(Vec::len), Some(0));

    // A missing field is named, and nothing is placed.
    let r = b
        .post(
            "/console/holds",
            &[("csrf", &csrf), ("account_id", &account), ("reason", "x")],
        )
        .await;
    assert_eq!(r.status, 422, "{}", r.body);
    assert!(r.body.contains("case_ref"), "{}", r.body);

    let mut placed = hold.to_vec();
    placed.push(("csrf", &csrf));
    let r = b.post("/console/holds", &placed).await;
    assert_eq!(r.status, 303, "{}", r.body);
    let to = r.location.expect("location");
    assert!(
        to.starts_with(&format!("/console/subjects/{account}?min_position=")),
        "{to}"
    );
    let subject = b.get(&to).await;
    assert_eq!(subject.status, 200, "{}", subject.body);
    let after = states(&subject.body);
    assert!(after.iter().any(|s| s == "held"), "{after:?}");
    // The case reference is shown as text, never as markup.
    assert!(subject
        .body
        .contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
    assert!(!subject.body.contains("<script>alert(1)"));

    // Released from the page: the items leave `held`.
    let action = subject
        .body
        .split("action=\"")
        .find(|s| s.starts_with("/console/holds/") && s.contains("/release"))
        .map(|s| s[..s.find('"').expect("end")].to_owned())
        .expect("a release form");
    let r = b
        .post(&action, &[("csrf", &csrf), ("account_id", &account)])
        .await;
    assert_eq!(r.status, 303, "{}", r.body);
    let subject = b.get(&r.location.expect("location")).await;
    assert!(
        states(&subject.body).iter().all(|s| s != "held"),
        "{}",
        subject.body
    );
}

async fn roles_decide_the_pages(backend: Backend) {
    let app = lightwidget_tests::spawn_app(backend).await;
    let auditor = app.staff("auditor").await;
    let security = app.staff("security").await;
    let (owner, account, _) = app.sign_in("bob").await;

    let mut a = Browser::new(&app);
    a.sign_in(&auditor).await;
    for page in [
        "/console/retention",
        "/console/breaches",
        "/console/security",
    ] {
        let r = a.get(page).await;
        assert_eq!(r.status, 403, "{page}");
        assert!(r.content_type.starts_with("text/html"), "{page}");
    }
    assert_eq!(a.get("/console/purges").await.status, 200);
    // The auditor verifies the chain: the same result and head as the API's.
    let page = a.get("/console/audit?verify=1").await;
    assert_eq!(page.status, 200, "{}", page.body);
    let api = app
        .get("/v1/audit/verify", Some(&auditor))
        .await
        .expect(200);
    assert!(page.body.contains("The chain verifies"), "{}", page.body);
    let head = api["head_hash"].as_str().expect("hash");
    assert!(page.body.contains(head), "{head}");
    // A reveal without a reason is refused, naming it.
    let r = a
        .get(&format!(
            "/console/audit/events?stream=account-{account}&reveal=true"
        ))
        .await;
    assert_eq!(r.status, 400);
    assert!(r.body.contains("reason"), "{}", r.body);
    let r = a
        .get(&format!("/console/audit/events?stream=account-{account}"))
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.body.contains("AccountRegistered"), "{}", r.body);
    assert!(r.body.contains("sealed"), "{}", r.body);

    // Security blocks from the page: the owner's commands answer 403 from then on.
    let mut s = Browser::new(&app);
    s.sign_in(&security).await;
    assert_eq!(s.get("/console/audit").await.status, 403);
    let page = s
        .get(&format!("/console/security?account_id={account}"))
        .await;
    assert_eq!(page.status, 200, "{}", page.body);
    let csrf = hidden(&page.body, "csrf");
    let block = format!("/console/security/{account}/block");
    assert_eq!(
        s.post(&block, &[("reason", "fraud")]).await.status,
        403,
        "no CSRF token"
    );
    assert_eq!(
        app.get("/v1/me", Some(&owner)).await.expect(200)["status"],
        "active"
    );
    let r = s
        .post(&block, &[("csrf", &csrf), ("reason", "fraud")])
        .await;
    assert_eq!(r.status, 303, "{}", r.body);
    assert_eq!(status_at(&app, &owner, r).await, "blocked");
    let r = s
        .post(
            &format!("/console/security/{account}/unblock"),
            &[("csrf", &csrf)],
        )
        .await;
    assert_eq!(r.status, 303, "{}", r.body);
    assert_eq!(status_at(&app, &owner, r).await, "active");
}

/// The owner's account status once the read model has what a console redirect names.
async fn status_at(app: &TestApp, owner: &str, r: Answer) -> serde_json::Value {
    let to = r.location.expect("location");
    let at = to.split("min_position=").nth(1).expect("position");
    app.get(&format!("/v1/me?min_position={at}"), Some(owner))
        .await
        .expect(200)["status"]
        .clone()
}

async fn the_breach_register_counts_down_and_records_the_notification(backend: Backend) {
    let app = lightwidget_tests::spawn_app(backend).await;
    let compliance = app.staff("compliance").await;
    let detected = chrono::Utc::now() - chrono::Duration::hours(100);
    let b1 = app
        .post(
            "/v1/compliance/breaches",
            Some(&compliance),
            json!({"description": "a laptop lost", "detected_at": detected.to_rfc3339(),
                   "categories": ["profile"], "affected_accounts": []}),
        )
        .await
        .expect(201);
    let id = b1["breach_id"].as_str().expect("id").to_owned();
    let mut b = Browser::new(&app);
    b.sign_in(&compliance).await;
    let page = b
        .get(&format!(
            "/console/breaches?min_position={}",
            b1["position"]
        ))
        .await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(page.body.contains("OVERDUE"), "{}", page.body);
    let csrf = hidden(&page.body, "csrf");
    let action = format!("/console/breaches/{id}/notified");
    // The form offers the server's now.
    let now = hidden(&page.body, "notified_at");
    let r = b
        .post(
            &action,
            &[
                ("csrf", &csrf),
                ("authority", "UODO"),
                ("notified_at", "yesterday"),
            ],
        )
        .await;
    assert_eq!(r.status, 422);
    assert!(r.body.contains("notified_at"), "{}", r.body);
    let r = b
        .post(
            &action,
            &[
                ("csrf", &csrf),
                ("authority", "UODO"),
                ("notified_at", &now),
            ],
        )
        .await;
    assert_eq!(r.status, 303, "{}", r.body);
    let page = b.get(&r.location.expect("location")).await;
    assert!(page.body.contains("UODO"), "{}", page.body);
    assert!(!page.body.contains("OVERDUE"), "{}", page.body);
    let api = app
        .get("/v1/compliance/breaches", Some(&compliance))
        .await
        .expect(200);
    assert_eq!(api["breaches"][0]["authority"], "UODO");
}

/// The session token an answer's `Set-Cookie` gives `name`.
fn cookie_of(r: &Answer, name: &str) -> String {
    r.set_cookies
        .iter()
        .find_map(|c| c.strip_prefix(&format!("{name}=")))
        .and_then(|c| c.split(';').next())
        .expect("the cookie")
        .to_owned()
}

async fn an_owner_exports_deletes_and_restores_from_the_account_pages(backend: Backend) {
    let app = lightwidget_tests::spawn_app(backend).await;
    let mut b = Browser::new(&app);
    let r = b.get("/account").await;
    assert_eq!(
        (r.status, r.location.as_deref()),
        (303, Some("/account/login"))
    );
    let form = b.get("/account/login").await;
    let csrf = hidden(&form.body, "csrf");
    assert_eq!(
        b.post("/account/login", &[("code", "demo:carol")])
            .await
            .status,
        403
    );
    let r = b
        .post("/account/login", &[("csrf", &csrf), ("code", "")])
        .await;
    assert_eq!(r.status, 422, "{}", r.body);
    let r = b
        .post("/account/login", &[("csrf", &csrf), ("code", "demo:carol")])
        .await;
    assert_eq!((r.status, r.location.as_deref()), (303, Some("/account")));
    let token = cookie_of(&r, "lw_account");
    assert!(r.set_cookies.iter().any(|c| c.starts_with("lw_account=")
        && c.contains("Path=/account")
        && c.contains("HttpOnly")));
    let (widget, at) = app.create_widget(&token, "Shop <feed>").await;

    let page = b.get(&format!("/account?min_position={at}")).await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(page.body.contains("Shop &lt;feed&gt;"), "{}", page.body);
    assert!(page.body.contains("carol"));
    let csrf = hidden(&page.body, "csrf");

    // A widget deleted without the CSRF token stays; with it, it is quarantined with its date.
    let delete = format!("/account/widgets/{widget}/delete");
    assert_eq!(b.post(&delete, &[]).await.status, 403);
    let api = app
        .get(&format!("/v1/widgets/{widget}"), Some(&token))
        .await
        .expect(200);
    assert_eq!(api["status"], "active");
    let r = b.post(&delete, &[("csrf", &csrf)]).await;
    assert_eq!(r.status, 303, "{}", r.body);
    let to = r.location.expect("location");
    let page = b.get(&to).await;
    let at = to.split("min_position=").nth(1).expect("position");
    let api = app
        .get(
            &format!("/v1/widgets/{widget}?min_position={at}"),
            Some(&token),
        )
        .await
        .expect(200);
    assert_eq!(api["status"], "quarantined");
    let until = api["quarantine_until"].as_str().expect("date");
    assert!(page.body.contains(until), "{}", page.body);
    let r = b
        .post(
            &format!("/account/widgets/{widget}/restore"),
            &[("csrf", &csrf)],
        )
        .await;
    assert_eq!(r.status, 303, "{}", r.body);
    let page = b.get(&r.location.expect("location")).await;
    assert!(
        page.body.contains("widget-status\">active"),
        "{}",
        page.body
    );

    // The export downloads the API's own export.
    let export = b.get("/account/export").await;
    assert_eq!(export.status, 200);
    assert!(export.content_type.starts_with("application/json"));
    let data: serde_json::Value = serde_json::from_str(&export.body).expect("JSON");
    let api = app.get("/v1/me/export", Some(&token)).await.expect(200);
    assert_eq!(data, api);

    // Deleted: the page gives the date and the receipt's address; then restored.
    assert_eq!(b.post("/account/delete", &[]).await.status, 403);
    let r = b.post("/account/delete", &[("csrf", &csrf)]).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.body.contains("/v1/log/receipts/"), "{}", r.body);
    let me = app.get("/v1/me", Some(&token)).await.expect(200);
    let head = app.store.head().await.expect("head").position;
    let me = if me["status"] == "quarantined" {
        me
    } else {
        app.get(&format!("/v1/me?min_position={head}"), Some(&token))
            .await
            .expect(200)
    };
    assert_eq!(me["status"], "quarantined");
    let until = me["quarantine_until"].as_str().expect("date");
    assert!(r.body.contains(until), "{until}: {}", r.body);
    let r = b.post("/account/restore", &[("csrf", &csrf)]).await;
    assert_eq!(r.status, 303, "{}", r.body);
    let page = b.get(&r.location.expect("location")).await;
    assert!(
        page.body.contains("account-status\">active"),
        "{}",
        page.body
    );

    // A staff token is no owner's session.
    let staff = app.staff("compliance").await;
    let mut s = Browser::new(&app);
    s.cookies.push(("lw_account".into(), staff));
    assert_eq!(s.get("/account").await.status, 403);

    // Signing out revokes the token.
    let r = b.post("/account/logout", &[("csrf", &csrf)]).await;
    assert_eq!(
        (r.status, r.location.as_deref()),
        (303, Some("/account/login"))
    );
    assert_eq!(app.get("/v1/me", Some(&token)).await.status, 401);
}

both!(
    signing_in_keeps_the_token_in_a_strict_http_only_cookie,
    a_hold_placed_from_the_console_turns_the_items_held_and_back,
    roles_decide_the_pages,
    the_breach_register_counts_down_and_records_the_notification,
    an_owner_exports_deletes_and_restores_from_the_account_pages,
);
