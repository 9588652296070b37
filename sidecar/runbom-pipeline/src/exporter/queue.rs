//! An exporter's `sending_queue` section (the Collector's `exporterhelper` queue): what the
//! exporter stage in front of it may hold.

use serde::{Deserialize, de::IgnoredAny};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SendingQueue {
    pub enabled: bool,
    /// Accepted for compatibility, and ignored: each exporter sends from one task.
    #[serde(default, rename = "num_consumers")]
    _num_consumers: IgnoredAny,
    /// What the queue holds before the pipeline is held back, counted by `sizer`.
    pub queue_size: usize,
    /// How `queue_size` counts: `requests` (the Collector's default) or `items` (spans, log
    /// records, data points). Either way the queue also holds at most
    /// `runbom_pipeline::DEFAULT_QUEUE_ITEMS` items, so memory stays bounded with large batches.
    pub sizer: QueueSizer,
    /// The name of an enabled `file_storage` extension: the queue is then a write-ahead log
    /// on disk, bounded by the extension's `max_size_mib` (`queue_size` and `sizer` apply to
    /// in-memory queues only).
    pub storage: Option<String>,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum QueueSizer {
    #[default]
    Requests,
    Items,
}

impl Default for SendingQueue {
    fn default() -> Self {
        Self {
            enabled: true,
            _num_consumers: IgnoredAny,
            queue_size: 64,
            sizer: QueueSizer::Requests,
            storage: None,
        }
    }
}
