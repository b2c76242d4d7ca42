//! Erasure receipts (issue 27), a query: from the token `DELETE /v1/me` gave, the account it
//! was given for (the `receipts` read model keeps only the token's hash), where its erasure
//! stands in the account's stream, and, once a signed checkpoint covers the `AccountPurged`,
//! the C2SP `tlog-proof@v1` document for it, whose `extra` is the event's chain-hash preimage.

use crate::{CommandError, Context};
use chrono::{DateTime, Utc};
use lightwidget_domain::DomainEvent;
use lightwidget_projections::models::receipts::{ReceiptDoc, VIEW as RECEIPTS};
use lightwidget_store::StoreError;
use lightwidget_tlog::proof::TlogProof;

/// Where an erasure receipt stands.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ErasureReceipt {
    /// No receipt was given under this token.
    Unknown,
    /// The erasure is due (`due_at`: the quarantine's end; the purge's time once purged and
    /// waiting for a signed checkpoint to cover it).
    Pending { due_at: Option<DateTime<Utc>> },
    /// The account was restored after the receipt was asked for: no erasure is pending.
    Restored,
    /// The `tlog-proof@v1` document.
    Ready(String),
}

/// The receipt of the token `token` (32 hex digits; anything else is unknown).
pub async fn erasure_receipt(cx: &Context, token: &str) -> Result<ErasureReceipt, CommandError> {
    let is_token = token.len() == 32
        && token
            .bytes()
            .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
    if !is_token {
        return Ok(ErasureReceipt::Unknown);
    }
    let hash = crate::tokens::token_hash(token);
    let Some(doc) = cx
        .views
        .get_many(RECEIPTS, std::slice::from_ref(&hash))
        .await?
        .into_iter()
        .next()
    else {
        return Ok(ErasureReceipt::Unknown);
    };
    let asked: ReceiptDoc = doc.read()?;
    let events = cx
        .store
        .read_whole_stream(&asked.account_id.stream())
        .await?;
    let (mut due_at, mut restored, mut purged) = (None, false, None);
    for e in &events {
        match e.to_domain() {
            Ok(DomainEvent::AccountDeletionRequested(d)) => {
                due_at = Some(d.quarantine_until);
                restored = false;
            }
            Ok(DomainEvent::AccountRestored(_)) if e.position > asked.position => restored = true,
            Ok(DomainEvent::AccountPurged(_)) if e.position > asked.position => {
                purged = Some((e.position, e.recorded_at))
            }
            _ => {}
        }
    }
    let Some((position, at)) = purged else {
        return Ok(if restored {
            ErasureReceipt::Restored
        } else {
            ErasureReceipt::Pending { due_at }
        });
    };
    let Some(signed) = cx
        .store
        .latest_checkpoint()
        .await?
        .filter(|c| c.size >= position)
    else {
        return Ok(ErasureReceipt::Pending { due_at: Some(at) });
    };
    let event = cx
        .store
        .read_all_raw(position - 1, 1)
        .await?
        .into_iter()
        .next()
        .filter(|e| e.position == position)
        .ok_or_else(|| StoreError::Corrupt(format!("the log has no event at {position}")))?;
    let mut preimage = event.prev_hash.to_vec();
    preimage.extend(lightwidget_store::chain::canonical_bytes(&event));
    let path = lightwidget_store::tree::inclusion(&*cx.store, signed.size, position - 1).await?;
    Ok(ErasureReceipt::Ready(
        TlogProof {
            extra: Some(preimage),
            index: position - 1,
            path,
            checkpoint: signed.note,
        }
        .to_text(),
    ))
}
