//! The context-window walk, written once above the backends.
//!
//! A backend opens a [`NewestFirst`] read of one conversation: the header,
//! then the messages newest first, fetched a page at a time (DynamoDB: one
//! descending Query over `META` then `M#...`; embedded: a range read). The
//! walk takes messages until the window's token budget is used and then stops
//! asking, so no page past the window is read: on DynamoDB a stored turn
//! still costs one Query for any window that fits a page.

use std::ops::Range;

use async_trait::async_trait;

use super::{Conversation, ConversationMeta, ConversationStore, StoreError, StoredMessage};

/// How much of a conversation a windowed read returns, decided from its header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WindowLimit {
    /// Oldest slot wanted (inclusive).
    pub from_seq: u64,
    /// Token budget: reading stops after the message that exceeds it.
    pub tokens: u64,
}

/// Decides a windowed read's limit from the conversation's header.
pub type WindowFn<'a> = dyn Fn(&ConversationMeta) -> WindowLimit + Send + Sync + 'a;

/// A descending read of one conversation, as a backend provides it.
#[async_trait]
pub trait NewestFirst: Send {
    /// The header, read first; `None` when none is stored. Messages with no
    /// header (DynamoDB: TTL removed it before the sweeper purged them) come
    /// back as a header with no life whose numbering starts above them.
    async fn header(&mut self) -> Result<Option<ConversationMeta>, StoreError>;

    /// The next message newest first with its slot in `slots` (whole: parts
    /// reassembled), or `None` when there are no more. A backend reads its
    /// next page only when asked past the last one it read.
    async fn next_message(
        &mut self,
        slots: Range<u64>,
    ) -> Result<Option<StoredMessage>, StoreError>;
}

/// Messages a walk has taken, newest first, and the budget they used.
#[derive(Default)]
struct Taken {
    newest_first: Vec<StoredMessage>,
    used: u64,
    /// Whether the budget ran out.
    full: bool,
}

impl Taken {
    /// Takes messages of `slots` from `read`, newest first, until the budget runs out.
    async fn take(
        &mut self,
        read: &mut dyn NewestFirst,
        slots: Range<u64>,
        budget: u64,
    ) -> Result<(), StoreError> {
        if self.full || slots.is_empty() {
            return Ok(());
        }
        while let Some(m) = read.next_message(slots.clone()).await? {
            self.used = self.used.saturating_add(m.window_tokens());
            self.newest_first.push(m);
            if self.used > budget {
                self.full = true;
                break;
            }
        }
        Ok(())
    }

    fn into_conversation(mut self, meta: ConversationMeta) -> Conversation {
        self.newest_first.reverse();
        Conversation {
            meta,
            messages: self.newest_first,
            complete: !self.full,
        }
    }
}

/// Walks a conversation's newest messages back from its header, down to
/// `limit(header).from_seq`, stopping after the message that exceeds the
/// token budget; returns them oldest first. A missing or expired
/// conversation comes back with no messages (and its stored header).
pub async fn walk(
    read: &mut dyn NewestFirst,
    now: i64,
    limit: &WindowFn<'_>,
) -> Result<Conversation, StoreError> {
    let meta = read.header().await?.unwrap_or_default();
    if !meta.is_live(now) {
        return Ok(Taken::default().into_conversation(meta));
    }
    let window = limit(&meta);
    let mut taken = Taken::default();
    taken
        .take(
            read,
            window.from_seq.max(meta.first_seq)..meta.next_seq,
            window.tokens,
        )
        .await?;
    Ok(taken.into_conversation(meta))
}

/// [`walk`] below slot `to` (all of it when `None`), and on through a fork's
/// parents: a fork's own slots start above the slot it was forked at, and
/// the history below is its parent's, read where it is (one more read per
/// generation, only when the window reaches it). A parent deleted or past
/// the life forked from has no history to give: the walk stops there.
pub async fn walk_forks<S: ConversationStore + ?Sized>(
    store: &S,
    tenant: &str,
    id: &str,
    now: i64,
    limit: &WindowFn<'_>,
    to: Option<u64>,
) -> Result<Conversation, StoreError> {
    let mut read = store.newest_first(tenant, id);
    let meta = read.header().await?.unwrap_or_default();
    if !meta.is_live(now) {
        return Ok(Taken::default().into_conversation(meta));
    }
    let window = limit(&meta);
    let from = window.from_seq.max(meta.first_seq);
    let mut end = to.map_or(meta.next_seq, |t| t.min(meta.next_seq));
    let mut taken = Taken::default();
    taken.take(read.as_mut(), from..end, window.tokens).await?;
    drop(read);
    let mut parent = meta.parent.clone();
    while let Some(p) = parent.take() {
        if taken.full || from > p.through_seq {
            break;
        }
        end = end.min(p.through_seq.saturating_add(1));
        let mut read = store.newest_first(tenant, &p.id);
        let Some(pm) = read.header().await? else {
            break;
        };
        if !pm.is_live(now) || pm.life != p.life {
            break;
        }
        taken
            .take(read.as_mut(), from.max(pm.first_seq)..end, window.tokens)
            .await?;
        parent = pm.parent;
    }
    Ok(taken.into_conversation(meta))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Message, Role};

    /// A conversation in memory, read in pages of `page` messages.
    struct Pages {
        meta: Option<ConversationMeta>,
        newest_first: Vec<StoredMessage>,
        page: usize,
        read: usize,
    }

    impl Pages {
        /// Pages a backend would have read so far (the first holds the header).
        fn pages(&self) -> usize {
            self.read.div_ceil(self.page).max(1)
        }
    }

    #[async_trait]
    impl NewestFirst for Pages {
        async fn header(&mut self) -> Result<Option<ConversationMeta>, StoreError> {
            Ok(self.meta.clone())
        }

        async fn next_message(
            &mut self,
            slots: Range<u64>,
        ) -> Result<Option<StoredMessage>, StoreError> {
            while let Some(m) = self.newest_first.get(self.read) {
                self.read += 1;
                if slots.contains(&m.seq) {
                    return Ok(Some(m.clone()));
                }
                if m.seq < slots.start {
                    return Ok(None);
                }
            }
            Ok(None)
        }
    }

    fn conversation(n: u64, page: usize) -> Pages {
        let meta = ConversationMeta {
            version: 1,
            next_seq: n,
            ..ConversationMeta::default()
        };
        let newest_first = (0..n)
            .rev()
            .map(|seq| StoredMessage {
                tokens: Some(6),
                ..StoredMessage::new(seq, Message::text(Role::User, "x"), 0)
            })
            .collect();
        Pages {
            meta: Some(meta),
            newest_first,
            page,
            read: 0,
        }
    }

    fn budget(tokens: u64) -> impl Fn(&ConversationMeta) -> WindowLimit + Send + Sync {
        move |m| WindowLimit {
            from_seq: m.first_seq,
            tokens,
        }
    }

    #[tokio::test]
    async fn a_full_window_stops_asking_for_pages() {
        // 10 tokens a message (6 + overhead 4): a 45-token budget takes 5.
        let mut read = conversation(500, 100);
        let c = walk(&mut read, 0, &budget(45)).await.unwrap();
        assert_eq!(
            c.messages.iter().map(|m| m.seq).collect::<Vec<_>>(),
            (495..500).collect::<Vec<_>>()
        );
        assert!(!c.complete);
        assert_eq!((read.read, read.pages()), (5, 1));
    }

    #[tokio::test]
    async fn a_long_window_reads_across_pages_in_order() {
        let mut read = conversation(250, 100);
        let c = walk(&mut read, 0, &budget(u64::MAX)).await.unwrap();
        assert_eq!(
            c.messages.iter().map(|m| m.seq).collect::<Vec<_>>(),
            (0..250).collect::<Vec<_>>()
        );
        assert!(c.complete);
        assert_eq!(read.pages(), 3);
    }

    #[tokio::test]
    async fn the_start_slot_bounds_the_walk() {
        let mut read = conversation(50, 100);
        let c = walk(&mut read, 0, &|_: &ConversationMeta| WindowLimit {
            from_seq: 40,
            tokens: u64::MAX,
        })
        .await
        .unwrap();
        assert_eq!(c.messages.len(), 10);
        assert!(c.complete);
    }

    #[tokio::test]
    async fn no_life_no_messages() {
        for meta in [
            None,
            Some(ConversationMeta {
                version: 3,
                expires_at: Some(10),
                next_seq: 50,
                ..ConversationMeta::default()
            }),
        ] {
            let mut read = conversation(50, 100);
            read.meta = meta.clone();
            let c = walk(&mut read, 20, &budget(u64::MAX)).await.unwrap();
            assert!(c.messages.is_empty() && c.complete);
            assert_eq!(c.meta, meta.unwrap_or_default());
            assert_eq!(read.read, 0);
        }
    }
}
