//! Embedding a producer: publish records of a custom sensor (here a fake
//! IMU at 200 Hz) into a ring that any camux reader can open.
//!
//! ```text
//! cargo run --release --example custom_sensor -- /tmp/camux imu 1000 &
//! cargo run --release -- tail --dir /tmp/camux imu --count 5
//! ```
use camux::ring::{RingOptions, StreamFormat};
use camux::source::Pacer;
use camux::{FrameInfo, Published, Publisher};

/// One IMU sample as the sensor delivers it.
#[derive(Clone, Copy)]
struct Sample {
    accel: [f32; 3],
    gyro: [f32; 3],
}

impl Sample {
    fn encode(&self) -> [u8; 24] {
        let mut b = [0u8; 24];
        for (i, v) in self.accel.iter().chain(&self.gyro).enumerate() {
            b[4 * i..4 * i + 4].copy_from_slice(&v.to_le_bytes());
        }
        b
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let dir = args.next().unwrap_or_else(|| "/run/camux".into());
    let name = args.next().unwrap_or_else(|| "imu".into());
    let count: u64 = args.next().map(|c| c.parse()).transpose()?.unwrap_or(1000);

    // Records of at most 64 bytes; many slots because they are tiny.
    let mut opts = RingOptions::new(&dir, &name, StreamFormat::opaque(64), 64);
    opts.slots = 1024;
    let mut publisher = Publisher::create(&opts)?;
    let mut pacer = Pacer::new(200.0)?;
    for i in 0..count {
        pacer.wait();
        let t = i as f32 / 200.0;
        let s = Sample {
            accel: [t.sin(), t.cos(), 9.81],
            gyro: [0.0, 0.01 * t, 0.0],
        };
        // The record is the payload; the sensor's own counter goes in the
        // metadata, and a unit tag in the user metadata.
        let info = FrameInfo {
            driver_seq: i,
            user: b"imu:m/s2,rad/s",
            ..Default::default()
        };
        if let Published::Dropped = publisher.publish(&info, &s.encode())? {
            eprintln!("record {i} dropped: every slot held");
        }
    }
    eprintln!("{:?}", publisher.stats());
    Ok(())
}
