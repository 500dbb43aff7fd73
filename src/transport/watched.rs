//! The queue between a watch and the stream that carries its events out:
//! bounded in batches and in bytes, so that a reader that does not read
//! makes its own watch wait and holds no more than that. A watch queues a
//! page of events as one batch (one wake of its reader for the page, not
//! one an event); the reader takes them one by one.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};
use tokio_stream::Stream;

use super::{ServiceError, Watched};

/// The events of one watch, ending with an error the client can resume
/// from (or just ending).
pub type WatchedEvents<E> = QueueReceiver<Result<Watched<E>, ServiceError>>;
/// The watch's end of its queue.
pub type WatchSender<E> = QueueSender<Result<Watched<E>, ServiceError>>;

/// One queued batch with the bytes it holds of its queue's budget,
/// released when the reader has taken all of it.
struct Queued<T> {
    items: Vec<T>,
    _bytes: Option<OwnedSemaphorePermit>,
}

/// The reading end of a queue bounded in batches and in bytes.
pub struct QueueReceiver<T> {
    receiver: mpsc::Receiver<Queued<T>>,
    /// The batch being taken, and its bytes, held until it is all taken.
    taking: Option<(std::vec::IntoIter<T>, Option<OwnedSemaphorePermit>)>,
}

/// The writing end of a queue bounded in batches and in bytes.
pub struct QueueSender<T> {
    sender: mpsc::Sender<Queued<T>>,
    bytes: Arc<Semaphore>,
    max_bytes: usize,
}

/// A queue of at most `max_batches` batches and `max_bytes` bytes (a batch
/// larger than that goes alone).
pub fn bounded_queue<T>(max_batches: usize, max_bytes: usize) -> (QueueSender<T>, QueueReceiver<T>) {
    let (sender, receiver) = mpsc::channel(max_batches);
    let max_bytes = max_bytes.clamp(1, Semaphore::MAX_PERMITS);
    let bytes = Arc::new(Semaphore::new(max_bytes));
    (QueueSender { sender, bytes, max_bytes }, QueueReceiver { receiver, taking: None })
}

impl<T> Clone for QueueSender<T> {
    fn clone(&self) -> Self {
        QueueSender { sender: self.sender.clone(), bytes: Arc::clone(&self.bytes), max_bytes: self.max_bytes }
    }
}

impl<T> QueueSender<T> {
    /// Queues `item`, of about `bytes`, once the queue has room for it;
    /// false once the reader went.
    pub async fn send(&self, item: T, bytes: usize) -> bool {
        self.send_batch(vec![item], bytes).await
    }

    /// Queues `items`, of about `bytes` in all, as one batch once the queue
    /// has room for it; false once the reader went.
    pub async fn send_batch(&self, items: Vec<T>, bytes: usize) -> bool {
        if items.is_empty() {
            return !self.sender.is_closed();
        }
        let wanted = u32::try_from(bytes.clamp(1, self.max_bytes)).unwrap_or(u32::MAX);
        let permit = tokio::select! {
            permit = Arc::clone(&self.bytes).acquire_many_owned(wanted) => permit.ok(),
            () = self.sender.closed() => return false,
        };
        self.sender.send(Queued { items, _bytes: permit }).await.is_ok()
    }

    /// Queues `item` if there is room for one more batch, whatever its
    /// bytes: the last word of a stream (why it ended), which a reader that
    /// took nothing for so long may miss.
    pub fn send_last(&self, item: T) {
        let _ = self.sender.try_send(Queued { items: vec![item], _bytes: None });
    }

    /// Waits for the reader to go.
    pub async fn closed(&self) {
        self.sender.closed().await;
    }
}

impl<T> QueueReceiver<T> {
    /// The next item; `None` once the sender ended.
    pub async fn recv(&mut self) -> Option<T> {
        std::future::poll_fn(|cx| self.poll_item(cx)).await
    }

    fn poll_item(&mut self, cx: &mut Context<'_>) -> Poll<Option<T>> {
        loop {
            if let Some((items, _bytes)) = &mut self.taking
                && let Some(item) = items.next()
            {
                if items.len() == 0 {
                    // The batch is all taken: its bytes go back to the queue.
                    self.taking = None;
                }
                return Poll::Ready(Some(item));
            }
            self.taking = None;
            match self.receiver.poll_recv(cx) {
                Poll::Ready(Some(Queued { items, _bytes })) => self.taking = Some((items.into_iter(), _bytes)),
                Poll::Ready(None) => return Poll::Ready(None),
                Poll::Pending => return Poll::Pending,
            }
        }
    }

    /// The queue a batch at a time: what is left of the batch being taken,
    /// then each batch whole.
    pub fn into_batches(self) -> QueueBatches<T> {
        QueueBatches(self)
    }

    fn poll_batch(&mut self, cx: &mut Context<'_>) -> Poll<Option<Vec<T>>> {
        if let Some((items, _bytes)) = self.taking.take() {
            return Poll::Ready(Some(items.collect()));
        }
        match self.receiver.poll_recv(cx) {
            // The batch's bytes go back to the queue as it leaves it.
            Poll::Ready(Some(Queued { items, _bytes })) => Poll::Ready(Some(items)),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        }
    }
}

/// A queue read a batch at a time (see [`QueueReceiver::into_batches`]).
pub struct QueueBatches<T>(QueueReceiver<T>);

impl<T> Stream for QueueBatches<T> {
    type Item = Vec<T>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Vec<T>>> {
        self.0.poll_batch(cx)
    }
}

impl<T> Unpin for QueueReceiver<T> {}

impl<T> Stream for QueueReceiver<T> {
    type Item = T;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<T>> {
        self.poll_item(cx)
    }
}

#[cfg(test)]
mod tests {
    use std::future::Future;

    use super::*;

    /// What `future` gives without waiting, if anything.
    fn now_or_never<F: Future>(future: F) -> Option<F::Output> {
        let mut future = std::pin::pin!(future);
        match future.as_mut().poll(&mut Context::from_waker(std::task::Waker::noop())) {
            Poll::Ready(output) => Some(output),
            Poll::Pending => None,
        }
    }

    #[tokio::test]
    async fn a_reader_that_does_not_read_holds_at_most_the_bytes_and_items_of_its_queue() {
        let (sender, mut events) = bounded_queue::<u32>(16, 1000);
        // Bounded in bytes: two items of 400 bytes fit, a third waits
        // until the reader takes one.
        assert!(now_or_never(sender.send(1, 400)).expect("room"));
        assert!(now_or_never(sender.send(2, 400)).expect("room"));
        assert!(now_or_never(sender.send(3, 400)).is_none(), "a third is over the bytes");
        assert_eq!(events.recv().await, Some(1));
        assert!(now_or_never(sender.send(3, 400)).expect("room once one was taken"));
        // An item larger than the whole queue goes alone.
        assert_eq!(events.recv().await, Some(2));
        assert_eq!(events.recv().await, Some(3));
        assert!(now_or_never(sender.send(4, 5000)).expect("alone"));
        assert!(now_or_never(sender.send(5, 1)).is_none(), "nothing beside it");
        assert_eq!(events.recv().await, Some(4));

        // Bounded in items: 16 small ones, then a wait.
        let (sender, mut events) = bounded_queue::<u32>(16, 1000);
        for n in 0..16 {
            assert!(now_or_never(sender.send(n, 1)).expect("room"));
        }
        assert!(now_or_never(sender.send(16, 1)).is_none(), "a 17th is over the batches");
        assert_eq!(events.recv().await, Some(0));

        // A reader that went ends the wait.
        drop(events);
        assert!(!sender.send(17, 1).await);
    }

    #[tokio::test]
    async fn a_queue_read_a_batch_at_a_time_gives_each_batch_whole() {
        let (sender, mut events) = bounded_queue::<u32>(16, 1000);
        assert!(now_or_never(sender.send_batch(vec![1, 2, 3], 900)).expect("room"));
        assert_eq!(events.recv().await, Some(1));
        assert!(now_or_never(sender.send_batch(vec![4, 5], 100)).expect("room"));
        let mut batches = events.into_batches();
        use tokio_stream::StreamExt;
        assert_eq!(batches.next().await, Some(vec![2, 3]), "what is left of the batch being taken");
        assert_eq!(batches.next().await, Some(vec![4, 5]));
        // Taken whole, a batch's bytes are back.
        assert!(now_or_never(sender.send(6, 1000)).expect("room"));
        drop(sender);
        assert_eq!(batches.next().await, Some(vec![6]));
        assert_eq!(batches.next().await, None);
    }

    #[tokio::test]
    async fn a_batch_is_taken_one_by_one_and_holds_its_bytes_until_all_is_taken() {
        let (sender, mut events) = bounded_queue::<u32>(16, 1000);
        assert!(now_or_never(sender.send_batch(vec![1, 2, 3], 900)).expect("room"));
        assert!(now_or_never(sender.send(4, 200)).is_none(), "the batch's bytes are held");
        assert_eq!(events.recv().await, Some(1));
        assert_eq!(events.recv().await, Some(2));
        assert!(now_or_never(sender.send(4, 200)).is_none(), "held until all of it is taken");
        assert_eq!(events.recv().await, Some(3));
        assert!(now_or_never(events.recv()).is_none(), "nothing more yet");
        assert!(now_or_never(sender.send(4, 200)).expect("room once the batch was taken"));
        assert_eq!(events.recv().await, Some(4));
    }
}
