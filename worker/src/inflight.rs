//! Command executions in flight: spawned by the read loop ([`crate::consumer`]) and by the
//! sweeper's retries ([`crate::sweeper`]), waited for on drain, abandoned when the worker is
//! dropped (as they would be if the process died), never left running on their own.

use std::future::Future;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// The executions a worker has started and not yet finished.
#[derive(Clone)]
pub(crate) struct InFlight {
    tracker: TaskTracker,
    abandon: CancellationToken,
}

impl InFlight {
    /// A tracker whose tasks are abandoned once `abandon` is cancelled.
    pub(crate) fn new(abandon: CancellationToken) -> Self {
        InFlight {
            tracker: TaskTracker::new(),
            abandon,
        }
    }

    pub(crate) fn spawn(&self, work: impl Future<Output = ()> + Send + 'static) {
        self.tracker
            .spawn(self.abandon.clone().run_until_cancelled_owned(work));
    }

    pub(crate) fn len(&self) -> usize {
        self.tracker.len()
    }

    /// No more tasks will be spawned; [`InFlight::wait`] returns once the last one ends.
    pub(crate) fn close(&self) {
        self.tracker.close();
    }

    pub(crate) async fn wait(&self) {
        self.tracker.wait().await;
    }
}
