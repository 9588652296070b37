//! An exporter's `sending_queue` section (the Collector's `exporterhelper` queue): what the
//! exporter stage in front of it may hold.

use serde::Deserialize;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SendingQueue {
    pub enabled: bool,
    /// Requests out at once from a persistent queue (`storage`; default 10, as in the
    /// Collector), each acknowledged when its export ends, in any order. An in-memory queue
    /// sends one request at a time; so does a `file` exporter's queue (its lines keep their
    /// order).
    pub num_consumers: usize,
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
            num_consumers: 10,
            queue_size: 64,
            sizer: QueueSizer::Requests,
            storage: None,
        }
    }
}
