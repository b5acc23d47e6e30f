using System.Runtime.InteropServices;
using ParetoQ.Runtime.Kernels;

namespace ParetoQ.Bench;

/// <summary>
/// <c>paretoq-bench attention</c>: one decode token's attention over an int8 KV cache, per kernel path and context,
/// on one thread, as the engine runs it (<see cref="Int8Attention.HeadGroup"/> per KV head). The caches of enough
/// layers to add up to <c>footprintBytes</c> are visited in turn: 256 MiB streams K and V from memory as a decode step
/// does, 1 MiB keeps them in L2 (the arithmetic alone). The rate is GB/s of cached K and V (int8 values, scales and
/// zero points).
/// </summary>
public static unsafe class AttentionBench
{
    public static void Run(BenchReport report, IReadOnlyList<KernelPath> paths, IReadOnlyList<int> contexts,
        int kvHeads, int group, int headDim, long footprintBytes, double minSeconds, TextWriter progress)
    {
        var rng = new Random(1);
        int qWidth = kvHeads * group * headDim;
        var q = new float[qWidth];
        var own = new float[2 * headDim];
        foreach (ref float v in q.AsSpan()) v = (float)(rng.NextDouble() * 2 - 1);
        foreach (ref float v in own.AsSpan()) v = (float)(rng.NextDouble() * 2 - 1);
        foreach (int context in contexts)
        {
            long rows = (long)kvHeads * context, keyBytes = Int8KvView.KeyBytes(context, kvHeads, headDim);
            long layerBytes = keyBytes + rows * headDim + 2 * rows * (sizeof(float) + 1);
            int layers = (int)Math.Max(1, footprintBytes / layerBytes);
            byte* memory = (byte*)NativeMemory.AlignedAlloc((nuint)(layerBytes * layers), 64);
            float* weights = (float*)NativeMemory.AlignedAlloc((nuint)(context * Int8Attention.Heads * 4), 64);
            int* dots = (int*)NativeMemory.AlignedAlloc(Int8Attention.DotInts * sizeof(int), 64);
            float* partials = (float*)NativeMemory.AlignedAlloc((nuint)(Int8Attention.Segments(context)
                * Int8Attention.PartialFloats(group, headDim) * 4), 64);
            float* output = (float*)NativeMemory.AlignedAlloc((nuint)(qWidth * 4), 64);
            try
            {
                var views = new Int8KvView[layers];
                for (int l = 0; l < layers; l++)
                {
                    byte* b = memory + l * layerBytes;
                    sbyte* k = (sbyte*)b, v = k + keyBytes;
                    float* kScale = (float*)(v + rows * headDim), vScale = kScale + rows;
                    sbyte* kZero = (sbyte*)(vScale + rows), vZero = kZero + rows;
                    rng.NextBytes(new Span<byte>(b, (int)(keyBytes + rows * headDim)));
                    for (long r = 0; r < rows; r++)
                    {
                        kScale[r] = vScale[r] = 0.01f;
                        kZero[r] = vZero[r] = (sbyte)rng.Next(-8, 8);
                    }
                    views[l] = new Int8KvView(k, v, kScale, kZero, vScale, vZero, context, kvHeads, headDim, false);
                }
                foreach (var path in paths)
                {
                    int next = 0;
                    fixed (float* qp = q, ownp = own)
                    {
                        float* qPtr = qp, kOwn = ownp, vOwn = ownp + headDim;
                        double seconds = Timing.Median(() =>
                        {
                            var view = views[next++ % layers];
                            for (int g = 0; g < kvHeads; g++)
                                Int8Attention.HeadGroup(path, qPtr + g * group * headDim, kOwn, vOwn, view, g, group,
                                    0, context, weights, dots, partials, output + g * group * headDim);
                        }, minSeconds);
                        progress.Write('.');
                        report.Row(("context", context), ("path", KernelDispatch.Name(path)),
                            ("us/layer", seconds * 1e6), ("kv_GB/s", layerBytes / seconds / 1e9));
                    }
                }
            }
            finally
            {
                NativeMemory.AlignedFree(output);
                NativeMemory.AlignedFree(partials);
                NativeMemory.AlignedFree(dots);
                NativeMemory.AlignedFree(weights);
                NativeMemory.AlignedFree(memory);
            }
        }
        progress.WriteLine();
    }
}
