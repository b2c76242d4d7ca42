//! The privacy operations anyone may read: the processor registry (R12).

use crate::state::AppState;
use axum::extract::State;
use axum::Json;
use serde::Serialize;
use utoipa::ToSchema;

#[derive(Serialize, ToSchema)]
pub struct ProcessorView {
    /// How the server names it: `hosting`, `backups`, `cdn`, `email`, `ticketing`,
    /// `analytics`, `payments`.
    pub kind: String,
    pub name: String,
    pub purpose: String,
    pub region: String,
    /// The categories of personal data it receives (none: it receives no personal data).
    pub categories: Vec<String>,
    /// Whether this server is set up to hand it anything.
    pub configured: bool,
}

#[derive(Serialize, ToSchema)]
pub struct Processors {
    pub processors: Vec<ProcessorView>,
}

/// Every processor the privacy policy names, what it is for, where, the categories of
/// personal data it receives, and whether this server is configured for it (R12).
#[utoipa::path(get, path = "/v1/privacy/processors", tag = "privacy",
    responses((status = 200, body = Processors)))]
pub async fn processors(State(app): State<AppState>) -> Json<Processors> {
    let processors = app
        .processors
        .processors()
        .iter()
        .map(|p| ProcessorView {
            kind: p.kind.clone(),
            name: p.name.clone(),
            purpose: p.purpose.clone(),
            region: p.region.clone(),
            categories: p.categories.iter().map(|c| c.as_str().to_owned()).collect(),
            configured: match p.kind.as_str() {
                // This server is the hosting.
                "hosting" => true,
                "payments" => app.paypal_secret.is_some(),
                // Backups, CDN, e-mail, ticketing and analytics have no settings yet: nothing
                // is handed to them.
                _ => false,
            },
        })
        .collect();
    Json(Processors { processors })
}
