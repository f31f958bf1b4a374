//! Maglev table build time (criterion): 10 to 5,000 equal-weight backends at
//! the default ring size and at the 10x one. Balance and disruption are not
//! timings and are computed by the `bench` binary (maglev_report) instead.

use bench::maglev_report::{BACKEND_COUNTS, RING_SIZES, group_name, keys, members};
use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use lb_daemon::maglev;

fn build(c: &mut Criterion) {
    for m in RING_SIZES {
        let mut g = c.benchmark_group(group_name(m));
        // Large rings take tens of ms per build; 10 samples keep the run short
        // while criterion still reports a confidence interval.
        g.sample_size(if m > 100_000 { 10 } else { 30 });
        for n in BACKEND_COUNTS {
            let k = keys(n);
            let mem = members(&k);
            g.bench_with_input(BenchmarkId::from_parameter(n), &mem, |b, mem| {
                b.iter(|| maglev::build(m, std::hint::black_box(mem)).expect("valid members"))
            });
        }
        g.finish();
    }
}

criterion_group!(benches, build);
criterion_main!(benches);
