/**
 * Workloads sized by time, for the tests that need a run long enough to measure something (the
 * event loop's liveness while native work runs). A fixed count finishes too soon on a fast
 * machine and takes too long on a loaded one; these grow the work until one run of it takes a
 * given time here and now, and report that time, so bounds can be stated relative to it.
 */

/**
 * Doubles `scale` from 1 until one `run(make(scale))` takes at least `ms` milliseconds (after one
 * untimed run at each size: first runs fault in memory and compile JS), or `maxScale` is reached.
 * Returns the work, its scale and how long its last run took.
 */
export function sizeByTime<W>(make: (scale: number) => W, run: (work: W) => void, ms: number, maxScale = 256): { work: W; scale: number; ms: number } {
  for (let scale = 1; ; scale *= 2) {
    const work = make(scale);
    run(work);
    const started = performance.now();
    run(work);
    const took = performance.now() - started;
    if (took >= ms || scale >= maxScale) return { work, scale, ms: took };
  }
}
