import * as hdr from 'hdr-histogram-js';
import type { LatencySummary } from './types.ts';

/** Latencies in whole microseconds, 1 µs to 60 s at three significant digits. */
export class LatencyRecorder {
  private readonly histogram = hdr.build({ lowestDiscernibleValue: 1, highestTrackableValue: 60_000_000, numberOfSignificantValueDigits: 3 });

  record(micros: number): void {
    this.histogram.recordValue(micros < 1 ? 1 : micros > 60_000_000 ? 60_000_000 : Math.round(micros));
  }

  get count(): number {
    return this.histogram.totalCount;
  }

  reset(): void {
    this.histogram.reset();
  }

  /**
   * HdrHistogram answers with the top of the bucket the percentile falls in, which from 2048 µs
   * up can lie above every recorded value; no percentile is reported above the recorded max.
   */
  percentile(p: number): number {
    return Math.min(this.histogram.getValueAtPercentile(p), this.histogram.maxValue);
  }

  summary(): LatencySummary {
    const h = this.histogram;
    if (h.totalCount === 0) return { min: 0, mean: 0, p50: 0, p90: 0, p99: 0, p999: 0, max: 0 };
    return {
      min: h.minNonZeroValue,
      mean: Math.round(h.mean),
      p50: this.percentile(50),
      p90: this.percentile(90),
      p99: this.percentile(99),
      p999: this.percentile(99.9),
      max: h.maxValue,
    };
  }
}
