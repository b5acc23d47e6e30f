using System.Runtime.InteropServices;
using ParetoQ.Runtime.Kernels;
using ParetoQ.Runtime.Quantization;

namespace ParetoQ.Bench;

/// <summary>
/// <c>paretoq-bench kernels --bound</c>: what bounds a decode GEMV on this machine. For each shape, format and path
/// three rates from one run, all in GB/s of packed weights:
/// - arithmetic only: the same kernel loop over a slice of the matrix (same columns, fewer rows) that stays in L1, on
///   one thread, so no load ever waits for memory;
/// - loads only: the same cold stream read with the widest loads and no arithmetic (the machine's read bandwidth),
///   on 1 thread and on every thread;
/// - cold: the real kernel over copies adding up to 512 MiB, on 1 thread and on every thread.
/// A kernel is memory-bound when arithmetic-only is well above loads-only; cold / loads is then its roofline fraction.
/// </summary>
public static unsafe class BoundBench
{
    private const long L1Bytes = 24 * 1024; // under every current core's L1 data cache (32-48 KB), with room for x
    private const long ColdBytes = 512L << 20;

    private sealed class RepeatJob(KernelPath path, PackedMatrix w, QuantizedActivations x, float* y, int repeats)
        : IParallelJob
    {
        public void Execute(int begin, int end, int worker)
        {
            for (int i = 0; i < repeats; i++) LowBitMatMul.Run(path, w, x, begin, end, y);
        }
    }

    private sealed class EmptyJob : IParallelJob
    {
        public void Execute(int begin, int end, int worker) { }
    }

    /// <summary>Median nanoseconds of one <see cref="WorkerPool.Run"/> of an empty job, one item per thread.</summary>
    public static double DispatchNanoseconds(WorkerPool pool)
    {
        var job = new EmptyJob();
        const int Batch = 1000;
        return Timing.Median(() =>
        {
            for (int i = 0; i < Batch; i++) pool.Run(job, pool.Threads);
        }, 0.2) / Batch * 1e9;
    }

    public static void Run(BenchReport report, WorkerPool one, WorkerPool all, IReadOnlyList<KernelPath> paths,
        IReadOnlyList<WeightFormat> formats, IReadOnlyList<(string Name, int Rows, int Cols)> shapes,
        double minSeconds, TextWriter progress)
    {
        // Read bandwidth: median of five measurements of the best of five passes, on one thread and on all of them.
        double loads1 = BandwidthBench.MeasureStable(one).Median;
        double loadsAll = BandwidthBench.MeasureStable(all).Median;
        report.Fact("loads_GB/s_1_thread", Math.Round(loads1, 1));
        report.Fact($"loads_GB/s_{all.Threads}_threads", Math.Round(loadsAll, 1));
        // What one pool dispatch costs with no work in it: the floor under every parallel operation of a decode step.
        report.Fact($"pool_dispatch_ns_{all.Threads}_threads", Math.Round(DispatchNanoseconds(all)));
        var rng = new Random(1);
        foreach (var (name, rows, cols) in shapes)
            foreach (var format in formats)
            {
                var layout = new PackedLayout(format, rows, cols);
                int copies = (int)Math.Max(1, (ColdBytes + layout.TotalBytes - 1) / layout.TotalBytes);
                byte* w = (byte*)NativeMemory.AlignedAlloc((nuint)(layout.TotalBytes * copies), 64);
                // The L1 slice: whole tiles of the same row length, as many as fit in L1Bytes.
                long rowBytes = layout.CodeBytes / layout.PaddedRows;
                int sliceRows = (int)Math.Clamp(L1Bytes / rowBytes / PackedLayout.TileRows * PackedLayout.TileRows,
                    PackedLayout.TileRows, layout.PaddedRows);
                var sliceLayout = new PackedLayout(format, sliceRows, cols);
                byte* slice = (byte*)NativeMemory.AlignedAlloc((nuint)sliceLayout.TotalBytes, 64);
                using var x = new QuantizedActivations(1, cols);
                float* y = (float*)NativeMemory.AlignedAlloc((nuint)((long)rows * sizeof(float)), 64);
                try
                {
                    var matrices = KernelBench.RandomMatrices(layout, w, copies, rng);
                    var sliceMatrix = KernelBench.RandomMatrices(sliceLayout, slice, 1, rng)[0];
                    var xf = new float[cols];
                    for (int i = 0; i < xf.Length; i++) xf[i] = (float)(rng.NextDouble() * 2 - 1);
                    x.Quantize(xf, 1, cols);
                    foreach (var path in paths)
                    {
                        // Repeat the slice about as many bytes as the whole matrix holds, at least 64 times.
                        int repeats = (int)Math.Max(64, layout.TotalBytes / sliceLayout.TotalBytes);
                        var repeat = new RepeatJob(path, sliceMatrix, x, y, repeats);
                        double arith = sliceLayout.TotalBytes * (double)repeats / 1e9
                            / Timing.Median(() => one.Run(repeat, sliceMatrix.Tiles), minSeconds);
                        double Cold(WorkerPool pool)
                        {
                            var jobs = matrices.Select(m => new KernelBench.Job(path, m, x, y)).ToArray();
                            int next = 0;
                            return layout.TotalBytes / 1e9 / Timing.Median(() => pool.Run(jobs[next++ % copies],
                                matrices[0].Tiles), minSeconds);
                        }
                        double cold1 = Cold(one), coldAll = Cold(all);
                        progress.Write('.');
                        report.Row(("shape", name), ("format", WeightFormats.Name(format)),
                            ("path", KernelDispatch.Name(path)), ("arith_GB/s", arith),
                            ("arith/loads1", arith / loads1), ("cold1_GB/s", cold1), ("cold1/loads1", cold1 / loads1),
                            ($"cold{all.Threads}_GB/s", coldAll), ($"cold{all.Threads}/loads{all.Threads}",
                                coldAll / loadsAll));
                    }
                }
                finally
                {
                    NativeMemory.AlignedFree(y);
                    NativeMemory.AlignedFree(slice);
                    NativeMemory.AlignedFree(w);
                }
            }
        progress.WriteLine();
    }
}
