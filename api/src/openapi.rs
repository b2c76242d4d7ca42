//! The served OpenAPI document: the routes' own descriptions, then the answers every
//! operation can give whatever its handler says, declared in one place (issue 22). Each error
//! is `application/problem+json` with the `Problem` schema; 429 and 503 say `Retry-After`,
//! 401 says `WWW-Authenticate`.

use serde_json::{json, Map, Value};

const METHODS: [&str; 5] = ["get", "post", "put", "patch", "delete"];

fn reason(status: &str) -> &'static str {
    match status {
        "400" => "a malformed request: a query parameter, a header or the JSON itself",
        "401" => "no token, or an unknown, expired or revoked one",
        "403" => "the token's holder may not do this",
        "404" => "no such thing (or not the caller's to see)",
        "405" => "the route does not take this method",
        "408" => "the request took longer than the server's deadline",
        "409" => "the state does not allow it, or a stale version",
        "410" => "gone",
        "413" => "the body is over 1 MiB",
        "415" => "the body is not JSON",
        "422" => "a value was refused; `field` names it",
        "428" => "a required precondition header is missing",
        "429" => "over a rate limit; nothing was recorded",
        "502" => "a processor the command needs could not be reached",
        "503" => "the store is unavailable, or a read model has not reached `min_position`",
        _ => "an error",
    }
}

fn problem(status: &str) -> Value {
    let mut response = json!({
        "description": reason(status),
        "content": {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}},
    });
    let header = match status {
        "429" | "503" => Some(("Retry-After", "seconds to wait before trying again")),
        "401" => Some(("WWW-Authenticate", "`Bearer error=\"invalid_token\"`")),
        _ => None,
    };
    if let Some((name, description)) = header {
        response["headers"] =
            json!({name: {"description": description, "schema": {"type": "string"}}});
    }
    response
}

/// Every query accepts `min_position` (API.md, Conventions): declared where a route did not.
fn declare_min_position(op: &mut Map<String, Value>) {
    let params = op
        .entry("parameters")
        .or_insert_with(|| Value::Array(Vec::new()));
    let Some(params) = params.as_array_mut() else {
        return;
    };
    // A string of digits: in a query every value is text, and so a negative test's "0" as a
    // string is told apart from a number only by a pattern.
    let schema = json!({"type": "string", "pattern": "^[0-9]{1,19}$"});
    let description = "wait until the read model reached this log position (up to 5 s, then \
                       503); a position past the log's head is 400";
    match params.iter_mut().find(|p| p["name"] == "min_position") {
        Some(p) => {
            p["schema"] = schema;
            p["description"] = json!(description);
        }
        None => params.push(
            json!({"name": "min_position", "in": "query", "required": false,
            "description": description, "schema": schema}),
        ),
    }
}

/// What a header parameter may hold: `DNT` is `0` or `1`, `If-Match` a version (a number,
/// quoted or not), any other visible ASCII (HTTP refuses control characters before any
/// handler sees them).
fn constrain_header(p: &mut Value) {
    let schema = match p["name"].as_str().map(str::to_ascii_lowercase).as_deref() {
        Some("dnt") => json!({"type": "string", "enum": ["0", "1"]}),
        Some("if-match") => json!({"type": "string", "pattern": "^\"?[0-9]{1,19}\"?$"}),
        _ => json!({"type": "string", "pattern": "^[!-~]+$"}),
    };
    p["schema"] = schema;
}

/// Adds to every operation the errors it can answer beyond its own: the store (503) and
/// the deadline (408) for all; 401 and 403 with a token; 400, 413, 415 and 422 with a JSON
/// body; 429 for writes; 400 for query or header parameters; 404 with a path parameter; and
/// makes every error `application/problem+json`.
pub fn declare_errors(doc: &mut Value) {
    let Some(paths) = doc.get_mut("paths").and_then(Value::as_object_mut) else {
        return;
    };
    for (path, item) in paths.iter_mut() {
        for method in METHODS {
            let Some(op) = item.get_mut(method).and_then(Value::as_object_mut) else {
                continue;
            };
            if method == "get" && path.starts_with("/v1/") {
                declare_min_position(op);
            }
            let mut statuses = vec!["408", "503"];
            let secured = op
                .get("security")
                .and_then(Value::as_array)
                .is_some_and(|s| !s.is_empty());
            if secured {
                statuses.extend(["401", "403"]);
            }
            if op.contains_key("requestBody") {
                statuses.extend(["400", "413", "415", "422"]);
            }
            if method != "get" {
                statuses.push("429");
            }
            if let Some(params) = op.get_mut("parameters").and_then(Value::as_array_mut) {
                if params
                    .iter()
                    .any(|p| p["in"] == "query" || p["in"] == "header")
                {
                    statuses.push("400");
                }
                for p in params.iter_mut().filter(|p| p["in"] == "header") {
                    constrain_header(p);
                }
            }
            if path.contains('{') {
                statuses.push("404");
            }
            let responses = op
                .entry("responses")
                .or_insert_with(|| Value::Object(Map::new()));
            let Some(responses) = responses.as_object_mut() else {
                continue;
            };
            for s in statuses {
                responses.entry(s).or_insert(Value::Null);
            }
            for (status, response) in responses.iter_mut() {
                if status.as_str() >= "400" {
                    *response = problem(status);
                }
            }
        }
    }
}

/// The query parameters each API operation declares, by method and route template: what
/// [`known_query`] holds requests to.
#[derive(Debug, Default)]
pub struct QueryParameters(std::collections::HashMap<(String, String), Vec<String>>);

impl QueryParameters {
    pub fn of(doc: &Value) -> Self {
        let mut out = std::collections::HashMap::new();
        let Some(paths) = doc.get("paths").and_then(Value::as_object) else {
            return QueryParameters(out);
        };
        for (path, item) in paths {
            for method in METHODS {
                let Some(op) = item.get(method) else { continue };
                let names = op
                    .get("parameters")
                    .and_then(Value::as_array)
                    .map(|ps| {
                        ps.iter()
                            .filter(|p| p["in"] == "query")
                            .filter_map(|p| p["name"].as_str().map(str::to_owned))
                            .collect()
                    })
                    .unwrap_or_default();
                out.insert((method.to_ascii_uppercase(), path.clone()), names);
            }
        }
        QueryParameters(out)
    }
}

/// Refuses a request to the API (`/v1/...`) that carries a query parameter its operation
/// does not declare: 400 naming it, before any handler runs. The public pages (`/w/...`,
/// previews) take whatever an embedding page adds (tracking tags, cache busters).
pub async fn known_query(
    axum::extract::State(known): axum::extract::State<std::sync::Arc<QueryParameters>>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    let route = request
        .extensions()
        .get::<axum::extract::MatchedPath>()
        .map(|p| p.as_str().to_owned());
    let (Some(route), Some(query)) = (route, request.uri().query()) else {
        return next.run(request).await;
    };
    if !route.starts_with("/v1/") {
        return next.run(request).await;
    }
    let key = (request.method().as_str().to_owned(), route);
    if let Some(names) = known.0.get(&key) {
        for (name, value) in crate::extract::url_pairs(query) {
            if name == "min_position" && value.parse::<u64>().is_err() {
                return crate::problem::Problem::bad_parameter(
                    "min_position",
                    "min_position must be a log position (0 or more)",
                )
                .into_response();
            }
            if !names.contains(&name) {
                let shown = if name.is_empty() {
                    "(empty)"
                } else {
                    name.as_str()
                };
                let detail = if names.is_empty() {
                    format!("unknown query parameter `{shown}`: this call takes none")
                } else {
                    format!(
                        "unknown query parameter `{shown}` (known: {})",
                        names.join(", ")
                    )
                };
                let field = if name.is_empty() {
                    "query"
                } else {
                    name.as_str()
                };
                return crate::problem::Problem::bad_parameter(field, detail).into_response();
            }
        }
    }
    next.run(request).await
}
