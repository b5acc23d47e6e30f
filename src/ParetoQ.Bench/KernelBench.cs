using System.Runtime.InteropServices;
using ParetoQ.Runtime.Kernels;
using ParetoQ.Runtime.Quantization;

namespace ParetoQ.Bench;

/// <summary>
/// <c>paretoq-bench kernels</c>: one packed matmul at a time, split over the worker pool as the engine splits it.
/// Shapes are (rows, cols) = (out, in) of y = x·Wᵀ; the codes are random bytes (valid for every format's timing).
/// </summary>
public static unsafe class KernelBench
{
    /// <summary>MobileLLM-ParetoQ-1B and MobileLLM-Pro projections, their heads, and llama.cpp's 4096×14336 comparison
    /// shape.</summary>
    public static readonly (string Name, int Rows, int Cols)[] DefaultShapes =
    [
        ("q/o 1280x1280", 1280, 1280),
        ("kv 320x1280", 320, 1280),
        ("kv-pro 256x1280", 256, 1280),
        ("up 3584x1280", 3584, 1280),
        ("down 1280x3584", 1280, 3584),
        ("up-pro 6144x1280", 6144, 1280),
        ("down-pro 1280x6144", 1280, 6144),
        ("head 32000x1280", 32000, 1280),
        ("head-pro 202048x1280", 202048, 1280),
        ("llama 4096x14336", 4096, 14336),
    ];

    private const long ColdBytes = 512L << 20;

    /// <summary>One packed matmul over the pool's share of tiles.</summary>
    internal sealed class Job(KernelPath path, PackedMatrix w, QuantizedActivations x, float* y) : IParallelJob
    {
        public void Execute(int begin, int end, int worker) => LowBitMatMul.Run(path, w, x, begin, end, y);
    }

    /// <summary>
    /// <paramref name="copies"/> identical matrices of random codes (valid for every format's timing) and scales of
    /// 0.01, one after another from <paramref name="w"/>, which holds copies × layout.TotalBytes.
    /// </summary>
    internal static PackedMatrix[] RandomMatrices(PackedLayout layout, byte* w, int copies, Random rng)
    {
        var span = new Span<byte>(w, checked((int)layout.TotalBytes));
        rng.NextBytes(span[..(int)layout.CodeBytes]);
        MemoryMarshal.Cast<byte, float>(span[(int)layout.CodeBytes..]).Fill(0.01f);
        for (int c = 1; c < copies; c++) span.CopyTo(new Span<byte>(w + c * layout.TotalBytes, span.Length));
        return [.. Enumerable.Range(0, copies).Select(c => new PackedMatrix(layout, w + c * layout.TotalBytes))];
    }

    public static void Run(BenchReport report, WorkerPool pool, IReadOnlyList<KernelPath> paths,
        IReadOnlyList<WeightFormat> formats, IReadOnlyList<(string Name, int Rows, int Cols)> shapes,
            IReadOnlyList<int> tokenCounts, double minSeconds, TextWriter progress,
        bool cold = false)
    {
        var rng = new Random(1);
        foreach (var (name, rows, cols) in shapes)
        {
            foreach (var format in formats)
            {
                var layout = new PackedLayout(format, rows, cols);
                // --cold: calls rotate over copies adding up to far more than the caches, so weights come from DRAM as
                // in a model.
                int copies = cold ? (int)Math.Max(1, (ColdBytes + layout.TotalBytes - 1) / layout.TotalBytes) : 1;
                byte* w = (byte*)NativeMemory.AlignedAlloc((nuint)(layout.TotalBytes * copies), 64);
                try
                {
                    var matrices = RandomMatrices(layout, w, copies, rng);
                    var matrix = matrices[0];
                    foreach (int n in tokenCounts)
                    {
                        if (n > 1 && rows > 100_000) continue; // prefill only ever computes the head for the last token
                        using var x = new QuantizedActivations(n, cols);
                        var xf = new float[n * cols];
                        for (int i = 0; i < xf.Length; i++) xf[i] = (float)(rng.NextDouble() * 2 - 1);
                        x.Quantize(xf, n, cols);
                        float* y = (float*)NativeMemory.AlignedAlloc((nuint)((long)n * rows * sizeof(float)), 64);
                        try
                        {
                            foreach (var path in paths)
                            {
                                var jobs = matrices.Select(m => new Job(path, m, x, y)).ToArray();
                                int next = 0;
                                double s = Timing.Median(() => pool.Run(jobs[next++ % copies], matrix.Tiles),
                                    minSeconds);
                                double gops = 2.0 * rows * cols * n / s / 1e9;
                                double gbs = layout.TotalBytes / s / 1e9;
                                progress.Write('.');
                                report.Row(("shape", name), ("format", WeightFormats.Name(format)),
                                    ("path", KernelDispatch.Name(path)), ("n", n), ("us", s * 1e6), ("GOPS", gops),
                                        ("weight_GB/s", gbs), ("weight_MB", layout.TotalBytes / 1e6));
                            }
                        }
                        finally
                        {
                            NativeMemory.AlignedFree(y);
                        }
                    }
                }
                finally
                {
                    NativeMemory.AlignedFree(w);
                }
            }
        }
        progress.WriteLine();
    }
}
