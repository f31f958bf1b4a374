//! The ring map, mapped into our memory. Writing a VIP's inactive ring half is
//! then plain stores (no syscall per position), and the half is published by
//! the one VIP map update that flips `ring_half`: that syscall orders our stores
//! before the kernel's next read of the new half.
//!
//! Also the one diff writer of ring halves ([`write_diff`]), which the real
//! map and the in-memory fake both use.

use std::{marker::PhantomData, os::fd::AsRawFd as _, ptr::NonNull};

use aya::maps::MapData;

use super::{DataplaneError, Sizes};

/// One ring half as [`write_diff`] sees it: positions `0..len`, each read
/// and written as one `u32`.
pub(crate) trait HalfMemory {
    /// How many positions.
    fn len(&self) -> usize;
    /// Reads position `i`.
    fn load(&self, i: usize) -> u32;
    /// Reads positions `at..at + 8` (one range check rather than eight).
    fn load8(&self, at: usize) -> [u32; 8] {
        std::array::from_fn(|k| self.load(at + k))
    }
    /// Stores `slot` at position `i`.
    fn store(&mut self, i: usize, slot: u32);
}

impl HalfMemory for [u32] {
    fn len(&self) -> usize {
        <[u32]>::len(self)
    }

    fn load(&self, i: usize) -> u32 {
        self[i]
    }

    fn store(&mut self, i: usize, slot: u32) {
        self[i] = slot;
    }
}

/// Where half `half` of VIP `vip_index`'s ring starts in the ring array,
/// once the index is known to be in range and `table_len` to be the ring
/// size: what every writer of a half checks first.
pub(crate) fn half_start(
    sizes: &Sizes,
    vip_index: u32,
    half: u32,
    table_len: usize,
) -> Result<usize, DataplaneError> {
    let m = sizes.ring_size;
    sizes.check_vip_index(vip_index)?;
    if table_len != m as usize {
        return Err(DataplaneError::Sizes(format!(
            "ring table has {table_len} entries, ring size is {m}"
        )));
    }
    Ok(lb_common::ring_index(vip_index, half, 0, m) as usize)
}

/// Makes `mem` equal `table`, storing only the positions that differ, one
/// `u32` store each: a packet reading the half meanwhile sees every position
/// either old or new, never torn. Each changed position is appended to
/// `changed` with the slot it held, before it is stored, so that even a
/// write cut short can be undone exactly. Returns how many changed.
///
/// Comparing against the half itself, in place, rather than against a copy
/// or a table kept on the side: one pass, and it is right whatever wrote the
/// half before (a previous daemon, an interrupted publication).
pub(crate) fn write_diff(
    mem: &mut (impl HalfMemory + ?Sized),
    table: &[u32],
    changed: &mut Vec<(u32, u32)>,
) -> usize {
    assert_eq!(mem.len(), table.len(), "ring half and table differ in size");
    let before = changed.len();
    // Eight positions per branch: a new backend changes about one position
    // in N, so nearly every group of eight is equal and skipped whole.
    let chunks = table.chunks_exact(8);
    let rest_at = table.len() - chunks.remainder().len();
    for (at, want) in (0..).step_by(8).zip(chunks) {
        let got = mem.load8(at);
        let differs = got.iter().zip(want).fold(0, |acc, (&g, &w)| acc | (g ^ w));
        if differs != 0 {
            store_diff(mem, at, want, changed);
        }
    }
    store_diff(mem, rest_at, &table[rest_at..], changed);
    changed.len() - before
}

/// The per-position part of [`write_diff`], for `want` at `at`.
fn store_diff(
    mem: &mut (impl HalfMemory + ?Sized),
    at: usize,
    want: &[u32],
    changed: &mut Vec<(u32, u32)>,
) {
    for (i, &slot) in (at..).zip(want) {
        let cur = mem.load(i);
        if cur != slot {
            // Positions index a ring of at most u32::MAX entries.
            changed.push((i as u32, cur));
            mem.store(i, slot);
        }
    }
}

/// A shared, writable mapping of `LB_RING` as a dense `u32` array.
pub struct RingMap {
    ptr: NonNull<u32>,
    len: usize,
    bytes: usize,
    // Keeps the map (and so the mapping's backing store) alive.
    _map: MapData,
}

// SAFETY: the mapping is plain shared memory owned by this value; access goes
// through &self / &mut self like a Vec.
unsafe impl Send for RingMap {}
// SAFETY: as for Send: shared reads are volatile loads, writes need &mut.
unsafe impl Sync for RingMap {}

impl RingMap {
    /// Maps `map`, an `[u32; 2]` array of `elements` entries created with
    /// `BPF_F_MMAPABLE`.
    pub fn new(map: MapData, elements: u32) -> Result<Self, DataplaneError> {
        let len = elements as usize * 2;
        // SAFETY: sysconf only returns a value of the system.
        let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) } as usize;
        let bytes = (len * 4).div_ceil(page) * page;
        // SAFETY: a fresh mapping at an address of the kernel's choice, of a
        // map fd that `map` keeps open; it overlaps no memory of ours.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                bytes,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                map.fd().as_fd_raw(),
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(DataplaneError::Mmap(std::io::Error::last_os_error()));
        }
        let ptr = NonNull::new(p.cast::<u32>())
            .ok_or_else(|| DataplaneError::Mmap(std::io::Error::other("mmap returned NULL")))?;
        Ok(Self {
            ptr,
            len,
            bytes,
            _map: map,
        })
    }

    /// The underlying map.
    pub fn map(&self) -> &MapData {
        &self._map
    }

    /// Number of `u32` positions (all VIPs, both halves).
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the map has no positions.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Reads position `i`.
    pub fn get(&self, i: usize) -> Option<u32> {
        // SAFETY: `i < len` positions of the live mapping, aligned (the
        // mapping is page-aligned, positions are u32).
        (i < self.len).then(|| unsafe { std::ptr::read_volatile(self.ptr.as_ptr().add(i)) })
    }

    /// Positions `start..start + len`, for [`write_diff`]; checked here, once.
    pub(crate) fn half(
        &mut self,
        start: usize,
        len: usize,
    ) -> Result<MappedHalf<'_>, DataplaneError> {
        if start.checked_add(len).is_none_or(|end| end > self.len) {
            return Err(DataplaneError::OutOfRange {
                what: "ring position",
                index: u32::try_from(start.saturating_add(len)).unwrap_or(u32::MAX),
                capacity: u32::try_from(self.len).unwrap_or(u32::MAX),
            });
        }
        // SAFETY: `start + len <= self.len` (checked above), so the pointer
        // stays within the mapping.
        let ptr = unsafe { self.ptr.add(start) };
        Ok(MappedHalf {
            ptr,
            len,
            _ring: PhantomData,
        })
    }

    /// Whether positions `start..start + table.len()` hold `table`, read in
    /// place (no copy of the half).
    pub fn equals(&self, start: usize, table: &[u32]) -> bool {
        if start
            .checked_add(table.len())
            .is_none_or(|end| end > self.len)
        {
            return false;
        }
        // SAFETY: `start + table.len() <= len` (checked above): the pointer
        // stays within the live mapping.
        let base = unsafe { self.ptr.as_ptr().add(start) };
        // One branch per eight positions rather than per position.
        let chunks = table.chunks_exact(8);
        let rest = chunks.remainder();
        let done = table.len() - rest.len();
        let differs = |i: usize, want: u32| {
            // SAFETY: callers pass `i < table.len()`, so `start + i < len`.
            unsafe { std::ptr::read_volatile(base.add(i)) ^ want }
        };
        (0..).step_by(8).zip(chunks).all(|(i, want)| {
            want.iter()
                .enumerate()
                .fold(0, |acc, (k, &w)| acc | differs(i + k, w))
                == 0
        }) && (done..).zip(rest).all(|(i, &w)| differs(i, w) == 0)
    }

    /// Writes position `i`.
    pub fn set(&mut self, i: usize, slot: u32) -> Result<(), DataplaneError> {
        if i >= self.len {
            return Err(DataplaneError::OutOfRange {
                what: "ring position",
                index: i as u32,
                capacity: self.len as u32,
            });
        }
        // Volatile: the kernel reads these concurrently; the compiler must
        // neither elide nor merge the stores.
        // SAFETY: `i` was checked against `len`, the mapping is live,
        // writable and aligned, and `&mut self` excludes our other accesses.
        unsafe { std::ptr::write_volatile(self.ptr.as_ptr().add(i), slot) };
        Ok(())
    }
}

/// A range of the mapped ring, borrowed from the [`RingMap`] (so nothing else
/// of ours writes it meanwhile).
pub(crate) struct MappedHalf<'a> {
    ptr: NonNull<u32>,
    len: usize,
    _ring: PhantomData<&'a mut RingMap>,
}

impl HalfMemory for MappedHalf<'_> {
    fn len(&self) -> usize {
        self.len
    }

    #[inline]
    fn load(&self, i: usize) -> u32 {
        assert!(i < self.len, "ring position {i} beyond the half");
        // SAFETY: `i < len`, and `RingMap::half` checked the whole range
        // lies within the live mapping. Volatile, as in `RingMap::get`.
        unsafe { std::ptr::read_volatile(self.ptr.as_ptr().add(i)) }
    }

    #[inline]
    fn load8(&self, at: usize) -> [u32; 8] {
        assert!(at + 8 <= self.len, "ring positions {at}.. beyond the half");
        // SAFETY: `at + k < at + 8 <= len`, within the mapping as in `load`.
        std::array::from_fn(|k| unsafe { std::ptr::read_volatile(self.ptr.as_ptr().add(at + k)) })
    }

    fn store(&mut self, i: usize, slot: u32) {
        assert!(i < self.len, "ring position {i} beyond the half");
        // SAFETY: as in `load`; the mapping is writable and we hold the
        // `RingMap` mutably. Volatile, as in `RingMap::set`: the kernel reads
        // these concurrently, so the stores must be neither elided, merged
        // nor split.
        unsafe { std::ptr::write_volatile(self.ptr.as_ptr().add(i), slot) };
    }
}

impl Drop for RingMap {
    fn drop(&mut self) {
        // SAFETY: unmaps exactly the mapping made in `new`; no borrow of it
        // outlives `self`.
        unsafe { libc::munmap(self.ptr.as_ptr().cast(), self.bytes) };
    }
}

trait AsFdRaw {
    fn as_fd_raw(&self) -> i32;
}

impl AsFdRaw for aya::maps::MapFd {
    fn as_fd_raw(&self) -> i32 {
        use std::os::fd::AsFd as _;
        self.as_fd().as_raw_fd()
    }
}
