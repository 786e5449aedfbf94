//! `Connection`'s load-generator path allocates nothing once warm: after
//! the first replies, `send_raw` + `read_kind` per request run without a
//! heap allocation on the calling thread (the claim in its module docs).

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::io::{Read, Write};
use std::net::TcpListener;
use std::time::Duration;

use tally_client::{Connection, ReplyKind, Timeouts};

/// Counts this thread's allocations.
struct Counting;

thread_local! {
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
}

// Safety: every call is forwarded to the system allocator unchanged; the
// counter is a const-initialized thread-local without a destructor.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.with(|n| n.set(n.get() + 1));
        System.alloc(layout)
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        System.dealloc(ptr, layout)
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.with(|n| n.set(n.get() + 1));
        System.realloc(ptr, layout, new_size)
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

const ROUNDS: usize = 2000;
const REQUEST: &[u8] = b"CHECKOUT F u h x linger=60\nCHECKIN F x\n";
const REPLIES: &[u8] =
    b"OK F x 1700000060000\nDENIED F x ALL_IN_USE -4 Licensed number of users already reached.\n";

#[test]
fn the_hot_path_does_not_allocate() {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    // A peer that answers each pair of requests with one OK and one DENIED.
    let peer = std::thread::spawn(move || {
        let (mut s, _) = listener.accept().expect("accept");
        let mut got = vec![0u8; REQUEST.len()];
        for _ in 0..ROUNDS {
            s.read_exact(&mut got).expect("requests");
            s.write_all(REPLIES).expect("replies");
        }
    });
    let mut c =
        Connection::connect_addr(addr, Timeouts::all(Duration::from_secs(20))).expect("connect");
    let round = |c: &mut Connection| {
        c.send_raw(REQUEST).expect("send");
        assert_eq!(c.read_kind().expect("reply"), ReplyKind::Ok);
        assert_eq!(c.read_kind().expect("reply"), ReplyKind::Denied);
    };
    // Warm up: the line buffer grows to the longest reply once.
    for _ in 0..10 {
        round(&mut c);
    }
    let before = ALLOCATIONS.with(Cell::get);
    for _ in 10..ROUNDS {
        round(&mut c);
    }
    let after = ALLOCATIONS.with(Cell::get);
    assert_eq!(after - before, 0, "allocations in {} rounds", ROUNDS - 10);
    peer.join().expect("peer");
}
