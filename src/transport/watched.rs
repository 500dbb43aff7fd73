//! The queue between a watch and the stream that carries its events out:
//! bounded in events and in bytes, so that a reader that does not read
//! makes its own watch wait and holds no more than that.

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

/// One queued item with the bytes it holds of its queue's budget,
/// released when the reader takes it.
struct Queued<T> {
    item: T,
    _bytes: Option<OwnedSemaphorePermit>,
}

/// The reading end of a queue bounded in items and in bytes.
pub struct QueueReceiver<T> {
    receiver: mpsc::Receiver<Queued<T>>,
}

/// The writing end of a queue bounded in items and in bytes.
pub struct QueueSender<T> {
    sender: mpsc::Sender<Queued<T>>,
    bytes: Arc<Semaphore>,
    max_bytes: usize,
}

/// A queue of at most `max_items` items and `max_bytes` bytes (an item
/// larger than that goes alone).
pub fn bounded_queue<T>(max_items: usize, max_bytes: usize) -> (QueueSender<T>, QueueReceiver<T>) {
    let (sender, receiver) = mpsc::channel(max_items);
    let max_bytes = max_bytes.clamp(1, Semaphore::MAX_PERMITS);
    (QueueSender { sender, bytes: Arc::new(Semaphore::new(max_bytes)), max_bytes }, QueueReceiver { receiver })
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
        let wanted = u32::try_from(bytes.clamp(1, self.max_bytes)).unwrap_or(u32::MAX);
        let permit = tokio::select! {
            permit = Arc::clone(&self.bytes).acquire_many_owned(wanted) => permit.ok(),
            () = self.sender.closed() => return false,
        };
        self.sender.send(Queued { item, _bytes: permit }).await.is_ok()
    }

    /// Queues `item` if there is room for one more, whatever its bytes: the
    /// last word of a stream (why it ended), which a reader that took
    /// nothing for so long may miss.
    pub fn send_last(&self, item: T) {
        let _ = self.sender.try_send(Queued { item, _bytes: None });
    }

    /// Waits for the reader to go.
    pub async fn closed(&self) {
        self.sender.closed().await;
    }
}

impl<T> QueueReceiver<T> {
    /// The next item; `None` once the sender ended.
    pub async fn recv(&mut self) -> Option<T> {
        self.receiver.recv().await.map(|queued| queued.item)
    }
}

impl<T> Stream for QueueReceiver<T> {
    type Item = T;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<T>> {
        self.receiver.poll_recv(cx).map(|queued| queued.map(|queued| queued.item))
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
        assert!(now_or_never(sender.send(16, 1)).is_none(), "a 17th is over the items");
        assert_eq!(events.recv().await, Some(0));

        // A reader that went ends the wait.
        drop(events);
        assert!(!sender.send(17, 1).await);
    }
}
