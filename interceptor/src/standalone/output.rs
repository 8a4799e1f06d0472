//! A program's output, kept for the admin port: the last lines (across restarts, so a crash can be read
//! after the fact) and a live feed of new ones. Never served on the proxy port.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use tokio::sync::broadcast;

/// Lines kept per program.
pub const LINES_KEPT: usize = 1000;
/// Longer lines are cut to this many bytes (a program printing a huge line cannot grow memory without bound).
pub const LINE_MAX_BYTES: usize = 4096;
/// Lines a slow live reader may fall behind before it skips ahead.
const FEED_BACKLOG: usize = 256;

/// One program's output.
#[derive(Debug)]
pub struct OutputLog {
    lines: Mutex<VecDeque<Arc<str>>>,
    feed: broadcast::Sender<Arc<str>>,
}

impl Default for OutputLog {
    fn default() -> Self {
        Self { lines: Mutex::new(VecDeque::with_capacity(64)), feed: broadcast::channel(FEED_BACKLOG).0 }
    }
}

impl OutputLog {
    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<Arc<str>>> {
        self.lines.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Adds a line (cut to [`LINE_MAX_BYTES`] at a character boundary) and sends it to live readers.
    pub fn push(&self, line: &str) {
        let mut end = line.len().min(LINE_MAX_BYTES);
        while !line.is_char_boundary(end) {
            end -= 1;
        }
        let line: Arc<str> = Arc::from(line[..end].trim_end_matches('\r'));
        {
            let mut lines = self.lock();
            if lines.len() == LINES_KEPT {
                lines.pop_front();
            }
            lines.push_back(line.clone());
        }
        // No live reader is fine.
        let _ = self.feed.send(line);
    }

    /// The last `n` lines, oldest first.
    pub fn last(&self, n: usize) -> Vec<Arc<str>> {
        let lines = self.lock();
        lines.iter().skip(lines.len().saturating_sub(n)).cloned().collect()
    }

    /// The last `n` lines and a feed of every line after them (no line lost or repeated in between).
    pub fn follow(&self, n: usize) -> (Vec<Arc<str>>, broadcast::Receiver<Arc<str>>) {
        let lines = self.lock();
        // Subscribed under the lock: a line pushed meanwhile is either in the backlog or in the feed.
        let feed = self.feed.subscribe();
        (lines.iter().skip(lines.len().saturating_sub(n)).cloned().collect(), feed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn keeps_the_last_lines_and_feeds_new_ones_without_gap() {
        let log = OutputLog::default();
        for i in 0..LINES_KEPT + 5 {
            log.push(&format!("line {i}"));
        }
        let last = log.last(2);
        assert_eq!(
            last.iter().map(|l| &**l).collect::<Vec<_>>(),
            vec![format!("line {}", LINES_KEPT + 3), format!("line {}", LINES_KEPT + 4)]
        );
        assert_eq!(log.last(usize::MAX).len(), LINES_KEPT);
        let (backlog, mut feed) = log.follow(1);
        assert_eq!(&*backlog[0], format!("line {}", LINES_KEPT + 4));
        log.push("next\r");
        assert_eq!(&*feed.recv().await.unwrap(), "next");
    }

    #[test]
    fn long_lines_are_cut_at_a_character_boundary() {
        let log = OutputLog::default();
        log.push(&"é".repeat(LINE_MAX_BYTES));
        let line = log.last(1).pop().unwrap();
        assert!(line.len() <= LINE_MAX_BYTES && line.len() >= LINE_MAX_BYTES - 1);
    }
}
