//! Unit tests.
use super::*;

fn stamp(s: i32) -> Stamp {
    Stamp { sec: s, nanosec: 0 }
}

#[test]
fn a_swapped_frame_is_the_range_of_the_buffer_and_the_slot_buffer_comes_back() {
    let (mut p, mut c, counters) = camera_ring(0, 2, 4, 4, QueuePolicy::Fifo);
    // A "message": 5 header bytes, a 2x2 rgb8 image, 3 trailing bytes.
    let mut buffer: Vec<u8> = (0..20).collect();
    let before = buffer.as_ptr();
    let header = SwappedHeader::Raw(RawHeader::new(2, 2, 6, "rgb8"));
    let queued = p
        .push_swapped(Instant::now(), stamp(1), "cam", header, &mut buffer, 5..17)
        .unwrap();
    assert!(queued);
    assert_ne!(
        buffer.as_ptr(),
        before,
        "the caller gets the slot's buffer back"
    );
    assert!(buffer.capacity() >= 4 * 4 * 4, "a whole slot to reuse");
    let f = c.take().unwrap();
    assert_eq!(f.data(), &(5..17).collect::<Vec<u8>>()[..]);
    assert_eq!(f.raw_view().unwrap().unwrap().height(), 2);
    assert_eq!(f.frame_id(), "cam");
    // A range outside the buffer, or a frame its header does not fit: refused, counted,
    // the buffer left as it was.
    let mut short = vec![0u8; 8];
    let header = SwappedHeader::Raw(RawHeader::new(2, 2, 6, "rgb8"));
    assert!(
        p.push_swapped(Instant::now(), stamp(2), "cam", header, &mut short, 5..17)
            .is_err()
    );
    let header = SwappedHeader::Raw(RawHeader::new(2, 2, 6, "rgb8"));
    assert!(
        p.push_swapped(Instant::now(), stamp(3), "cam", header, &mut short, 0..8)
            .is_err()
    );
    assert_eq!(short, vec![0u8; 8]);
    assert_eq!(counters.snapshot().bad_input, 2);
    // A copied frame after a swapped one in the same slot starts at 0 again.
    c.recycle(f);
    assert!(push(&mut p, 4));
    assert_eq!(c.take().unwrap().data(), &[0u8; 12]);
}

fn push(p: &mut FrameProducer, s: i32) -> bool {
    p.push_raw(
        Instant::now(),
        stamp(s),
        "cam",
        RawHeader::new(2, 2, 6, "rgb8"),
        &[0u8; 12],
    )
    .unwrap()
}

#[test]
fn keep_newest_supersedes_and_counts() {
    let (mut p, mut c, counters) = camera_ring(0, 3, 4, 4, QueuePolicy::KeepNewest);
    for s in 1..=3 {
        assert!(push(&mut p, s));
    }
    let f = c.take().unwrap();
    assert_eq!(f.stamp, stamp(3));
    assert_eq!(f.frame_id(), "cam");
    c.recycle(f);
    let snap = counters.snapshot();
    assert_eq!((snap.received, snap.dropped_superseded), (3, 2));
    assert!(c.take().is_none());
}

#[test]
fn keep_newest_evicts_the_oldest_when_full() {
    // Queue of 2, consumer busy: frames 1..=5 arrive, 1..=3 are evicted on arrival.
    let (mut p, mut c, counters) = camera_ring(0, 2, 4, 4, QueuePolicy::KeepNewest);
    for s in 1..=5 {
        assert!(push(&mut p, s), "frame {s} must get in");
    }
    assert_eq!(counters.snapshot().dropped_ring_full, 3);
    // The loop takes the newest; frame 4 is superseded.
    assert_eq!(c.take().unwrap().stamp, stamp(5));
    let snap = counters.snapshot();
    assert_eq!(
        (
            snap.received,
            snap.dropped_ring_full,
            snap.dropped_superseded
        ),
        (5, 3, 1)
    );
}

#[test]
fn keep_newest_never_runs_out_of_slots_while_a_frame_is_inferred() {
    let (mut p, mut c, _) = camera_ring(0, 1, 4, 4, QueuePolicy::KeepNewest);
    push(&mut p, 0);
    let busy = c.take().unwrap(); // being inferred
    for s in 1..50 {
        assert!(push(&mut p, s));
    }
    c.recycle(busy);
    assert_eq!(c.take().unwrap().stamp, stamp(49));
}

#[test]
fn fifo_keeps_order_and_drops_the_newest_when_full() {
    let (mut p, mut c, counters) = camera_ring(0, 2, 4, 4, QueuePolicy::Fifo);
    assert!(push(&mut p, 1) && push(&mut p, 2));
    assert!(!push(&mut p, 3)); // refused by the full queue
    assert_eq!(counters.snapshot().dropped_ring_full, 1);
    let order: Vec<i32> = std::iter::from_fn(|| c.take())
        .map(|f| f.stamp.sec)
        .collect();
    assert_eq!(order, vec![1, 2]);
}

#[test]
fn slots_circulate_without_loss() {
    let (mut p, mut c, counters) = camera_ring(0, 2, 4, 4, QueuePolicy::Fifo);
    for s in 0..100 {
        assert!(push(&mut p, s));
        let f = c.take().unwrap();
        assert_eq!(f.seq, s as u64);
        c.recycle(f);
    }
    assert_eq!(counters.snapshot().dropped_ring_full, 0);
}

#[test]
fn bad_frames_are_counted_and_logged_once_per_kind() {
    let (mut p, _c, counters) = camera_ring(0, 2, 4, 4, QueuePolicy::Fifo);
    let now = Instant::now();
    let e = p
        .push_raw(
            now,
            stamp(1),
            "x",
            RawHeader::new(2, 2, 6, "32FC1"),
            &[0; 12],
        )
        .unwrap_err();
    assert_eq!(e.kind, BadInputKind::Encoding);
    assert!(e.first_of_kind);
    assert!(
        p.push_raw(now, stamp(1), "x", RawHeader::new(2, 2, 6, "rgb8"), &[0; 5])
            .is_err()
    );
    assert!(
        p.push_raw(
            now,
            stamp(1),
            "x",
            RawHeader::new(8, 8, 24, "rgb8"),
            &[0; 192]
        )
        .is_err()
    ); // > 4x4
    assert!(
        p.push_compressed(now, stamp(1), "x", "gif", &[0; 4])
            .is_err()
    );
    assert_eq!(counters.snapshot().bad_input, 4);
    // Seen once already: not logged again.
    assert!(!counters.bad(BadInputKind::Encoding));
}

#[test]
fn stamps_convert_through_nanoseconds() {
    let s = Stamp {
        sec: -1,
        nanosec: 500_000_000,
    };
    assert_eq!(s.as_nanos(), -500_000_000);
    assert_eq!(Stamp::from_nanos(s.as_nanos()), s);
}
