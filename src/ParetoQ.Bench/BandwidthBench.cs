using System.Runtime.Intrinsics;
using ParetoQ.Runtime.Format;
using ParetoQ.Runtime.Kernels;

namespace ParetoQ.Bench;

/// <summary>
/// <c>paretoq-bench bandwidth</c>: how fast this machine streams memory into the cores, the roofline for decode.
/// Each thread sums its share of a large buffer with the widest vector loads; the best of several passes is reported.
/// </summary>
public static unsafe class BandwidthBench
{
    private sealed class ReadJob(byte* data, long bytes, int parts) : IParallelJob
    {
        public long Sink;

        public void Execute(int begin, int end, int worker)
        {
            long chunk = bytes / parts / 256 * 256;
            var acc = Vector256<ulong>.Zero;
            for (int part = begin; part < end; part++)
            {
                byte* p = data + part * chunk, stop = p + chunk;
                for (; p < stop; p += 256)
                {
                    acc += Vector256.Load((ulong*)p) ^ Vector256.Load((ulong*)(p + 32))
                        ^ Vector256.Load((ulong*)(p + 64)) ^ Vector256.Load((ulong*)(p + 96))
                         ^ Vector256.Load((ulong*)(p + 128)) ^ Vector256.Load((ulong*)(p + 160))
                             ^ Vector256.Load((ulong*)(p + 192)) ^ Vector256.Load((ulong*)(p + 224));
                }
            }
            Interlocked.Add(ref Sink, (long)Vector256.Sum(acc));
        }
    }

    /// <summary>Best read bandwidth in GB/s over a buffer of <paramref name="bytes"/>, in the same huge-page memory
    /// that resident weights get (<see cref="ResidentMemory"/>), so the roofline and the weights stream
    /// alike.</summary>
    public static double Measure(WorkerPool pool, long bytes, int passes = 5)
    {
        byte* data = ResidentMemory.Allocate(bytes);
        try
        {
            new Span<byte>(data, (int)Math.Min(bytes, int.MaxValue)).Fill(1);
            for (long o = int.MaxValue; o < bytes; o += 4096) data[o] = 1;
            var job = new ReadJob(data, bytes, pool.Threads * 8);
            double best = double.MaxValue;
            for (int i = 0; i < passes; i++) best = Math.Min(best,
                Timing.Seconds(() => pool.Run(job, pool.Threads * 8)));
            return bytes / best / 1e9;
        }
        finally
        {
            ResidentMemory.Free(data);
        }
    }

    /// <summary>
    /// A bandwidth stable enough to judge a roofline fraction by: the median of <paramref name="runs"/>
    /// <see cref="Measure"/>s over 512 MiB, with the lowest and highest beside it. One best-of-five read 37 to 60 GB/s
    /// from run to run on a shared 2-vCPU VM; the median of five moved a few percent.
    /// </summary>
    public static (double Median, double Low, double High) MeasureStable(WorkerPool pool, int runs = 5) =>
        Stable(() => Measure(pool, StableBytes), runs);

    /// <summary>The median of <paramref name="runs"/> calls of <paramref name="measure"/>, with the lowest and
    /// highest.</summary>
    public static (double Median, double Low, double High) Stable(Func<double> measure, int runs = 5)
    {
        var values = Enumerable.Range(0, runs).Select(_ => measure()).Order().ToArray();
        return (values[values.Length / 2], values[0], values[^1]);
    }

    private const long StableBytes = 512L << 20;
}
