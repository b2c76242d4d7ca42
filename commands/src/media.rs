//! The Instagram media cache of widgets (R7): a public page whose widget has no cached media,
//! or media past the policy's `media_cache` period, starts one background fetch with the
//! owner's access token; the fetch is appended as `MediaCached` on `media-<widget>` with the
//! version the read model had seen, so two processes fetching at once append one.

use crate::instagram::InstagramError;
use crate::unit::{transact_with_attempts, Unit, UseCase};
use crate::{CommandError, Context, Loaded};
use lightwidget_domain::event::MediaItem;
use lightwidget_domain::support::{CacheMedia, MediaCache};
use lightwidget_domain::{streams, AccountId, DomainEvent, WidgetId};
use lightwidget_store::Metadata;
use std::sync::Arc;

/// Starts a fetch of `widget`'s media unless this process is fetching it already.
/// `media_version` is the version of the widget's media stream the caller saw.
pub fn refresh(cx: &Arc<Context>, widget: WidgetId, owner: AccountId, media_version: u64) {
    {
        let Ok(mut running) = cx.media_fetches.lock() else {
            return;
        };
        if !running.insert(widget) {
            return;
        }
    }
    let cx = cx.clone();
    tokio::spawn(async move {
        if let Err(e) = fetch(&cx, widget, owner, media_version).await {
            tracing::warn!(widget = %widget, error = %e, "fetching Instagram media");
        }
        if let Ok(mut running) = cx.media_fetches.lock() {
            running.remove(&widget);
        }
    });
}

#[derive(Debug, thiserror::Error)]
enum FetchError {
    #[error(transparent)]
    Command(#[from] CommandError),
    #[error("{0}")]
    Instagram(#[from] InstagramError),
}

/// The owner's latest access token, if it is still held (it is profile data: erased with the
/// account).
async fn access_token(cx: &Context, owner: AccountId) -> Result<Option<String>, CommandError> {
    let events = cx.store.read_whole_stream(&owner.stream()).await?;
    let token = events.iter().rev().find_map(|e| match e.to_domain() {
        Ok(DomainEvent::AccountSignedIn(s)) => Some(s.access_token.into_value()),
        _ => None,
    });
    Ok(token.flatten())
}

async fn fetch(
    cx: &Context,
    widget: WidgetId,
    owner: AccountId,
    version: u64,
) -> Result<(), FetchError> {
    let Some(token) = access_token(cx, owner).await? else {
        return Ok(());
    };
    let items = cx.instagram.media(&token).await?;
    let work = Cache {
        widget,
        version,
        items,
    };
    let meta = Metadata::anonymous();
    match transact_with_attempts(&*cx.store, &*cx.clock, &meta, None, 1, &work).await {
        // Another process fetched first: its media will do.
        Ok(_) | Err(CommandError::Conflict { .. }) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

struct Cache {
    widget: WidgetId,
    version: u64,
    items: Vec<MediaItem>,
}

#[async_trait::async_trait]
impl UseCase for Cache {
    type Output = ();

    async fn run(&self, u: &mut Unit<'_>) -> Result<(), CommandError> {
        // Decided on the version the caller saw, not read again: a fetch that lost the race
        // to another appends nothing.
        let seen = Loaded {
            state: MediaCache,
            version: self.version,
            position: 0,
        };
        let command = CacheMedia {
            widget_id: self.widget,
            items: self.items.clone(),
        };
        u.decide(&streams::media(self.widget), &seen, command)?;
        Ok(())
    }
}
