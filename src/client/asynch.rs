//! The tokio-friendly subscriber (feature `async`).
//!
//! A futex cannot be awaited, so each [`AsyncSubscriber`] has one small
//! thread that sleeps on the ring's futex word (exactly as a blocking reader
//! does) and signals a [`tokio::sync::Notify`] when it changes. The task
//! itself never sleeps and never polls in a loop: it tries a non-blocking
//! receive and awaits the notification if there is nothing yet.
//!
//! One caveat: after a producer restart the next receive re-registers, a
//! handshake over the local socket on the calling thread (tens of
//! microseconds, bounded by `SubscriberOptions::handshake_timeout`).

use super::{Frame, RecvError, Subscriber, WaitHandles};
use crate::ring::protocol::{self, LeaseWords, RingWords};
use crate::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::Notify;

/// An async wrapper around a [`Subscriber`].
///
/// ```no_run
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// use camux::{AsyncSubscriber, Subscriber};
/// let mut sub = AsyncSubscriber::new(Subscriber::open("/run/camux", "cam0")?);
/// let frame = sub.recv().await?;
/// println!("frame {} of {} bytes", frame.seq(), frame.payload().len());
/// # Ok(()) }
/// ```
pub struct AsyncSubscriber {
    inner: Subscriber,
    notify: Arc<Notify>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl AsyncSubscriber {
    /// Wraps `sub`, starting its waiter thread.
    pub fn new(mut sub: Subscriber) -> AsyncSubscriber {
        let handles = sub.watch();
        let notify = Arc::new(Notify::new());
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (notify, stop) = (notify.clone(), stop.clone());
            std::thread::Builder::new()
                .name("camux-async-wait".into())
                .spawn(move || waiter(handles, notify, stop))
                .expect("spawn camux waiter thread")
        };
        AsyncSubscriber {
            inner: sub,
            notify,
            stop,
            thread: Some(thread),
        }
    }

    /// The blocking subscriber inside (for metadata, `latest`, ...).
    pub fn get_mut(&mut self) -> &mut Subscriber {
        &mut self.inner
    }

    /// Waits for the next frame or event without blocking the runtime.
    pub async fn recv(&mut self) -> Result<Frame, RecvError> {
        loop {
            match self.inner.try_recv() {
                Err(RecvError::Empty) => {}
                other => return other,
            }
            // The waiter stores a permit if it fires between the check above
            // and this await (Notify::notify_one semantics), so no wake is lost.
            self.notify.notified().await;
        }
    }

    /// Like [`recv`](Self::recv) with a timeout.
    pub async fn recv_timeout(&mut self, timeout: Duration) -> Result<Frame, RecvError> {
        match tokio::time::timeout(timeout, self.recv()).await {
            Ok(r) => r,
            Err(_) => Err(RecvError::Timeout),
        }
    }
}

impl Drop for AsyncSubscriber {
    fn drop(&mut self) {
        // Not joined: a drop on a runtime thread must not block. The waiter
        // wakes within half a heartbeat interval, sees the flag and exits;
        // it holds only Arcs, so nothing dangles meanwhile.
        self.stop.store(true, Ordering::Release);
        self.thread.take();
    }
}

fn waiter(handles: Arc<Mutex<WaitHandles>>, notify: Arc<Notify>, stop: Arc<AtomicBool>) {
    let current = || handles.lock().unwrap_or_else(|p| p.into_inner()).clone();
    let (mut ring, mut lease) = current();
    let mut seen = ring.notify().load(Ordering::Acquire);
    while !stop.load(Ordering::Acquire) {
        let beat = ring.header.heartbeat_interval() / 2;
        match &lease {
            Some(l) => {
                if protocol::prepare_wait(&*ring, l.map.waiting(), seen) {
                    ring.wait(seen, beat);
                }
                // The subscriber's own blocking path clears this too; a stale
                // 1 only costs the producer a spurious futex wake.
                l.map.waiting().store(0, Ordering::Relaxed);
            }
            None => ring.wait(seen, beat),
        }
        // Read the word *before* waking the task: a publish after this load
        // changes it, so the next wait returns at once and wakes the task
        // again. (Loading it after the wake could miss a frame published
        // after the task looked.)
        (ring, lease) = current();
        seen = ring.notify().load(Ordering::Acquire);
        // Wake the task on every change, and every half heartbeat interval
        // so it can notice a stale or replaced producer.
        notify.notify_one();
    }
}
