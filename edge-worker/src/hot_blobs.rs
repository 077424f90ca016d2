//! Blob bytes pulled again and again in one isolate, kept in its JavaScript
//! heap so that a pull of them makes no subrequest at all.
//!
//! The Cache API serves a location's pulls without reaching R2, but each hit
//! is still a subrequest whose bytes stream in before they stream out. A CI
//! fleet pulling one image pulls the same layers many times a minute from the
//! same isolates; for those, a copy in memory answers at once.
//!
//! A blob enters on its second read: a Cache API hit (another read in the
//! location came first), or a second read from R2 in this isolate (pulls
//! closer together than the Cache API's fill after the first). It is copied
//! from the stream being served while the puller reads the other half of it,
//! so nobody waits for the copy. A blob read once is only noted, by key (at
//! most [`MAX_NOTED_KEYS`] of them), so one-off pulls take no memory for
//! their bytes. Memory is bounded by the
//! deployment's budget (`PIER_HOT_BLOB_BYTES`, 0 turns it off), and by what
//! the wasm memory leaves of the isolate's 128 MB ([`MEMORY_CEILING`]):
//! uploads buffer their parts in wasm memory, which never shrinks, so a
//! Worker that took large pushes keeps fewer blobs rather than running out
//! of memory, which would fail every request the isolate holds. A blob that
//! finds the budget spent is not kept, and an entry leaves once nobody read
//! it for [`IDLE_MS`], or, least recently read first, when the wasm memory
//! grew past the room it held. What is kept stays kept rather than being
//! pushed out by the next newcomer, so a stream of one-off pulls larger than
//! the budget never churns what is hot (each admission costs a copy).
//!
//! Data keys name one upload's bytes and are never reused (see `cache`), so a
//! copy is never wrong; a delete made through this isolate drops it at once.
//! The registry checks the repository's link and the blob's record before it
//! reads data, so what is kept here is only ever served to whom may read it.

use std::cell::RefCell;
use std::collections::HashMap;
use std::ops::Range;

use pier_core::store::{GetResult, ObjectMeta};
use worker::js_sys::{Array, ArrayBuffer, Date, Uint8Array};
use worker::wasm_bindgen::JsCast;
use worker::wasm_bindgen_futures::JsFuture;
use worker::web_sys::{ReadableStream, Response};
use worker::{console_warn, Context};

use crate::js_body::js_body;

/// An entry nobody read for this long leaves, making room for others.
const IDLE_MS: f64 = 60_000.0;
/// Objects over this size are never kept: a few of them would spend the
/// budget, and large layers are pulled less often than small ones.
const MAX_OBJECT_BYTES: u64 = 8 << 20;
/// How many blobs read once from R2 are noted at most; when full, the notes
/// of idle ones go, then all of them (a burst of one-off pulls).
const MAX_NOTED_KEYS: usize = 4096;
/// What the wasm memory and the kept blobs may take together: the isolate's
/// 128 MB less room for the compiled module, the JavaScript heap and the
/// bodies in flight.
const MEMORY_CEILING: u64 = 96 << 20;

/// The bytes kept blobs may take now: the deployment's `budget`, or what the
/// wasm memory's peak leaves under [`MEMORY_CEILING`], whichever is less.
pub fn room(budget: u64) -> u64 {
    let wasm_memory = core::arch::wasm32::memory_size::<0>() as u64 * 65_536;
    budget.min(MEMORY_CEILING.saturating_sub(wasm_memory))
}

enum Slot {
    /// Read once from R2 in this isolate, not kept: the next whole read of
    /// it, from wherever it comes, is kept.
    Noted { since_ms: f64 },
    /// Being copied in: its bytes are counted, so two fills cannot both
    /// overrun the budget, and a concurrent read goes to the Cache API. A
    /// fill the runtime never finished (its `waitUntil` cut short) is swept
    /// like an idle entry.
    Filling { size: u64, since_ms: f64 },
    Kept {
        bytes: Uint8Array,
        etag: String,
        last_read_ms: f64,
    },
}

impl Slot {
    fn size(&self) -> u64 {
        match self {
            Slot::Noted { .. } => 0,
            Slot::Filling { size, .. } => *size,
            Slot::Kept { bytes, .. } => bytes.length() as u64,
        }
    }
}

#[derive(Default)]
struct HotBlobs {
    by_key: HashMap<String, Slot>,
    bytes: u64,
    /// How many slots are [`Slot::Noted`].
    noted: usize,
}

thread_local! {
    static HOT: RefCell<HotBlobs> = RefCell::new(HotBlobs::default());
}

impl HotBlobs {
    fn remove(&mut self, key: &str) {
        if let Some(slot) = self.by_key.remove(key) {
            self.bytes -= slot.size();
            self.noted -= usize::from(matches!(slot, Slot::Noted { .. }));
        }
    }

    /// Notes `key` as read once, making room among the notes if needed.
    fn note(&mut self, key: &str, now_ms: f64) {
        if self.noted >= MAX_NOTED_KEYS {
            self.sweep(now_ms);
        }
        if self.noted >= MAX_NOTED_KEYS {
            self.by_key.retain(|_, slot| !matches!(slot, Slot::Noted { .. }));
            self.noted = 0;
        }
        self.by_key.insert(key.to_string(), Slot::Noted { since_ms: now_ms });
        self.noted += 1;
    }

    /// Drops entries, least recently used first, until what is held fits
    /// `room` (which shrinks as the wasm memory grows). A fill dropped here
    /// is not kept when its copy ends.
    fn fit(&mut self, room: u64, now_ms: f64) {
        if self.bytes <= room {
            return;
        }
        self.sweep(now_ms);
        let mut held: Vec<(f64, String)> = self
            .by_key
            .iter()
            .filter_map(|(key, slot)| match slot {
                Slot::Kept { last_read_ms: used, .. } | Slot::Filling { since_ms: used, .. } => {
                    Some((*used, key.clone()))
                }
                Slot::Noted { .. } => None,
            })
            .collect();
        held.sort_by(|a, b| a.0.total_cmp(&b.0));
        for (_, key) in held {
            if self.bytes <= room {
                break;
            }
            self.remove(&key);
        }
    }

    /// Drops entries idle (or filling, or noted) for [`IDLE_MS`]; called only
    /// when room is needed.
    fn sweep(&mut self, now_ms: f64) {
        let idle: Vec<String> = self
            .by_key
            .iter()
            .filter(|(_, slot)| match slot {
                Slot::Kept {
                    last_read_ms: since, ..
                }
                | Slot::Filling { since_ms: since, .. }
                | Slot::Noted { since_ms: since } => now_ms - since >= IDLE_MS,
            })
            .map(|(key, _)| key.clone())
            .collect();
        for key in idle {
            self.remove(&key);
        }
    }
}

/// Blob data (or a range of it) from this isolate's memory, after dropping
/// what no longer fits the room `budget` leaves.
pub fn serve(key: &str, range: Option<&Range<u64>>, budget: u64) -> Option<GetResult> {
    let now_ms = Date::now();
    let (bytes, etag) = HOT.with(|hot| {
        let mut hot = hot.borrow_mut();
        hot.fit(room(budget), now_ms);
        match hot.by_key.get_mut(key)? {
            Slot::Kept { last_read_ms, .. } if now_ms - *last_read_ms >= IDLE_MS => {
                hot.remove(key);
                None
            }
            Slot::Kept {
                bytes,
                etag,
                last_read_ms,
            } => {
                *last_read_ms = now_ms;
                Some((bytes.clone(), etag.clone()))
            }
            Slot::Filling { .. } | Slot::Noted { .. } => None,
        }
    })?;
    let size = bytes.length() as u64;
    let view = match range {
        None => bytes,
        Some(r) if r.start < r.end && r.end <= size => bytes.subarray(r.start as u32, r.end as u32),
        // The store decides what an unsatisfiable range is.
        Some(_) => return None,
    };
    let length = view.length() as u64;
    // The response copies the bytes (the Fetch standard's body extraction),
    // so the kept ones are never handed out to be detached.
    let readable = Response::new_with_opt_buffer_source(Some(&view)).ok()?.body()?;
    Some(GetResult {
        meta: ObjectMeta { size, etag },
        body: js_body(readable, length, format!("{key} from the isolate's memory")),
    })
}

/// Whether a whole read of `key` from R2 is its second in this isolate
/// (its first is noted, and the answer is `false`).
pub fn read_before(key: &str) -> bool {
    HOT.with(|hot| {
        let mut hot = hot.borrow_mut();
        match hot.by_key.get(key) {
            Some(Slot::Noted { .. }) => true,
            // Being copied in (or kept, and forgotten meanwhile): nothing to note.
            Some(_) => false,
            None => {
                hot.note(key, Date::now());
                false
            }
        }
    })
}

/// The stream to serve a whole blob read a second time (see the module's
/// doc): `readable` itself, or half of it while the other half is copied into
/// memory, when `budget` has room for it.
pub fn keep(key: &str, meta: &ObjectMeta, readable: ReadableStream, budget: u64, context: &Context) -> ReadableStream {
    if meta.size == 0 || meta.size > MAX_OBJECT_BYTES.min(budget) || !reserve(key, meta.size, budget) {
        return readable;
    }
    let halves: Array = readable.tee();
    let served: ReadableStream = halves.get(0).unchecked_into();
    let copied: ReadableStream = halves.get(1).unchecked_into();
    let (key, meta) = (key.to_string(), meta.clone());
    context.wait_until(async move {
        let read = async {
            let promise = Response::new_with_opt_readable_stream(Some(&copied))?.array_buffer()?;
            JsFuture::from(promise).await
        };
        let kept = match read.await {
            Ok(buffer) => {
                let bytes = Uint8Array::new(&buffer.unchecked_into::<ArrayBuffer>());
                (bytes.length() as u64 == meta.size).then_some(bytes)
            }
            Err(err) => {
                console_warn!("pier: keeping {key} in memory failed: {err:?}");
                None
            }
        };
        HOT.with(|hot| {
            let mut hot = hot.borrow_mut();
            // Forgotten while it was being copied (a delete): not kept.
            if !matches!(hot.by_key.get(&key), Some(Slot::Filling { .. })) {
                return;
            }
            match kept {
                Some(bytes) => {
                    let slot = Slot::Kept {
                        bytes,
                        etag: meta.etag,
                        last_read_ms: Date::now(),
                    };
                    hot.by_key.insert(key, slot);
                }
                None => hot.remove(&key),
            }
        });
    });
    served
}

/// Counts `size` bytes for `key` if the room `budget` leaves has space for
/// them (after dropping idle entries) and nobody holds or fills it yet.
fn reserve(key: &str, size: u64, budget: u64) -> bool {
    HOT.with(|hot| {
        let mut hot = hot.borrow_mut();
        match hot.by_key.get(key) {
            Some(Slot::Noted { .. }) => hot.remove(key),
            Some(_) => return false,
            None => {}
        }
        let (room, now_ms) = (room(budget), Date::now());
        hot.fit(room, now_ms);
        if hot.bytes + size > room {
            hot.sweep(now_ms);
            if hot.bytes + size > room {
                return false;
            }
        }
        hot.bytes += size;
        let filling = Slot::Filling { size, since_ms: now_ms };
        hot.by_key.insert(key.to_string(), filling);
        true
    })
}

/// Drops `key` from memory (its object was deleted through this isolate).
pub fn forget(key: &str) {
    HOT.with(|hot| hot.borrow_mut().remove(key));
}

/// Whether `key`'s bytes are in memory (for tests that must know where a
/// later read is served from).
#[cfg(feature = "test-endpoints")]
pub fn holds(key: &str) -> bool {
    HOT.with(|hot| matches!(hot.borrow().by_key.get(key), Some(Slot::Kept { .. })))
}

/// The bytes kept or being copied in (for tests of the room's bound).
#[cfg(feature = "test-endpoints")]
pub fn held_bytes() -> u64 {
    HOT.with(|hot| hot.borrow().bytes)
}
