//! The ring map, mapped into our memory. Writing a VIP's inactive ring half is
//! then plain stores (no syscall per position), and the half is published by
//! the one VIP map update that flips `ring_half`: that syscall orders our stores
//! before the kernel's next read of the new half.

use std::{os::fd::AsRawFd as _, ptr::NonNull};

use aya::maps::MapData;

use super::DataplaneError;

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
