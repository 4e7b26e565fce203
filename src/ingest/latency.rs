//! Latency hop by hop: sample time stamps in, HDR histograms per (origin,
//! hop) out, read by the latency panel and the ingest benchmark.

use bevy::prelude::*;
use hdrhistogram::Histogram;

use super::sample::{HopStamps, Origin, now_us};

/// The hops a sample takes from the machine to the screen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Hop {
    /// Source time → OPC UA server time stamp (OPC UA only).
    SourceToServer,
    /// Source time → read off the socket by the adapter.
    SourceToAdapter,
    /// Socket → decoded sample.
    Decode,
    /// Decoded → applied to the twin (channel wait + frame wait + apply).
    DecodeToApply,
    /// Source time → applied to the twin.
    SourceToTwin,
    /// Applied → the end of the frame that shows it.
    ApplyToFrame,
    /// Source time → end of the frame that shows it.
    EndToEnd,
}

impl Hop {
    pub const ALL: [Hop; 7] = [
        Hop::SourceToServer,
        Hop::SourceToAdapter,
        Hop::Decode,
        Hop::DecodeToApply,
        Hop::SourceToTwin,
        Hop::ApplyToFrame,
        Hop::EndToEnd,
    ];
    pub fn label(self) -> &'static str {
        match self {
            Hop::SourceToServer => "source to server",
            Hop::SourceToAdapter => "source to adapter",
            Hop::Decode => "decode",
            Hop::DecodeToApply => "decode to twin",
            Hop::SourceToTwin => "source to twin",
            Hop::ApplyToFrame => "twin to frame",
            Hop::EndToEnd => "end to end",
        }
    }
    fn index(self) -> usize {
        self as usize
    }
}

/// Percentiles of one hop, in microseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HopSummary {
    pub count: u64,
    pub p50_us: u64,
    pub p95_us: u64,
    pub p99_us: u64,
    pub max_us: u64,
}

const ORIGINS: [Origin; 2] = [Origin::Mqtt, Origin::OpcUa];

fn origin_index(o: Origin) -> usize {
    match o {
        Origin::Mqtt => 0,
        Origin::OpcUa => 1,
    }
}

/// Histograms per origin and hop, plus samples waiting for their frame.
#[derive(Resource)]
pub struct LatencyStats {
    hist: Vec<Histogram<u64>>,
    /// Stamps whose frame has not ended yet: (origin, source µs, applied µs).
    pending_frame: Vec<(Origin, i64, i64)>,
    /// Negative intervals seen (clocks of two machines disagree).
    pub clock_skew_count: u64,
}

impl Default for LatencyStats {
    fn default() -> Self {
        // Constant, valid bounds: 1 µs to 1 h at 3 significant figures.
        #[allow(
            clippy::expect_used,
            reason = "constant bounds, valid for every run (a unit test builds them)"
        )]
        let mk = || {
            Histogram::<u64>::new_with_bounds(1, 3_600_000_000, 3)
                .expect("constant bounds are valid")
        };
        Self {
            hist: (0..ORIGINS.len() * Hop::ALL.len()).map(|_| mk()).collect(),
            pending_frame: Vec::new(),
            clock_skew_count: 0,
        }
    }
}

impl LatencyStats {
    fn slot(origin: Origin, hop: Hop) -> usize {
        origin_index(origin) * Hop::ALL.len() + hop.index()
    }

    pub fn record(&mut self, origin: Origin, hop: Hop, from_us: i64, to_us: i64) {
        self.record_n(origin, hop, from_us, to_us, 1);
    }

    fn record_n(&mut self, origin: Origin, hop: Hop, from_us: i64, to_us: i64, n: u64) {
        // Saturating: a source time from a wrong clock must not overflow.
        let d = to_us.saturating_sub(from_us);
        if d < 0 {
            self.clock_skew_count += n;
        }
        let v = d.max(1) as u64;
        let h = &mut self.hist[Self::slot(origin, hop)];
        h.saturating_record_n(v, n);
    }

    /// Record the hops known when a sample is applied to the twin.
    pub fn record_applied(&mut self, origin: Origin, hops: &HopStamps, applied_us: i64) {
        if let Some(b) = hops.broker_us {
            self.record(origin, Hop::SourceToServer, hops.source_us, b);
        }
        self.record(
            origin,
            Hop::SourceToAdapter,
            hops.source_us,
            hops.received_us,
        );
        self.record(origin, Hop::Decode, hops.received_us, hops.decoded_us);
        self.record(origin, Hop::DecodeToApply, hops.decoded_us, applied_us);
        self.record(origin, Hop::SourceToTwin, hops.source_us, applied_us);
        self.pending_frame
            .push((origin, hops.source_us, applied_us));
    }

    /// Close the frame: every sample applied in it is now on screen.
    pub fn close_frame(&mut self, frame_us: i64) {
        let pending = std::mem::take(&mut self.pending_frame);
        for (origin, source_us, applied_us) in &pending {
            self.record(*origin, Hop::ApplyToFrame, *applied_us, frame_us);
            self.record(*origin, Hop::EndToEnd, *source_us, frame_us);
        }
        self.pending_frame = pending;
        self.pending_frame.clear();
    }

    pub fn summary(&self, origin: Origin, hop: Hop) -> Option<HopSummary> {
        let h = &self.hist[Self::slot(origin, hop)];
        (!h.is_empty()).then(|| HopSummary {
            count: h.len(),
            p50_us: h.value_at_quantile(0.50),
            p95_us: h.value_at_quantile(0.95),
            p99_us: h.value_at_quantile(0.99),
            max_us: h.max(),
        })
    }

    pub fn reset(&mut self) {
        for h in &mut self.hist {
            h.reset();
        }
        self.clock_skew_count = 0;
    }
}

pub fn record_frame_hop(stats: Option<ResMut<LatencyStats>>) {
    if let Some(mut s) = stats.filter(|s| !s.pending_frame.is_empty()) {
        s.close_frame(now_us());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extreme_source_times_are_recorded_without_overflow() {
        let mut s = LatencyStats::default();
        s.record(Origin::Mqtt, Hop::SourceToTwin, i64::MIN, i64::MAX);
        s.record(Origin::Mqtt, Hop::SourceToTwin, i64::MAX, i64::MIN);
        assert_eq!(s.clock_skew_count, 1);
        assert!(s.summary(Origin::Mqtt, Hop::SourceToTwin).is_some());
    }
}
