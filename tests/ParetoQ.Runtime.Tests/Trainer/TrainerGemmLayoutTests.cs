using System.Runtime.Intrinsics;
using ParetoQ.Trainer;

namespace ParetoQ.Runtime.Tests;

/// <summary>The trainer's GEMM in its three layouts against a double-precision reference, on odd shapes: tails of rows,
/// of column panels and blocks, and of the vector width along k.</summary>
public sealed class TrainerGemmLayoutTests
{
    public static TheoryData<int, int, int> Shapes => new()
    {
        { 1, 1, 1 }, { 3, 5, 7 }, { 4, 4, 8 }, { 5, 17, 33 }, { 9, 40, 300 }, { 16, 33, 17 }, { 130, 70, 65 },
        { 8, 64, 260 }, { 7, 95, 3 },
    };

    // The tiles in Vector<float> (256 bits on AVX2) and, where the CPU has them, in 512-bit vectors.
    private static readonly Gemm[] Pools = Vector512.IsHardwareAccelerated
        ? [new Gemm(2, wide: false), new Gemm(2, wide: true)] : [new Gemm(2, wide: false)];

    [Theory]
    [MemberData(nameof(Shapes))]
    public void Every_layout_matches_the_reference(int m, int n, int k)
    {
        var rng = new Random(m * 1000 + n * 10 + k);
        float[] Random(int count) => [.. Enumerable.Range(0, count).Select(_ => (float)(rng.NextDouble() * 2 - 1))];
        float[] a = Random(m * k), b = Random(k * n), start = Random(m * n);
        // The same operands stored transposed: aT [k, m], bT [n, k].
        var aT = new float[k * m];
        var bT = new float[n * k];
        for (int r = 0; r < m; r++) for (int kk = 0; kk < k; kk++) aT[kk * m + r] = a[r * k + kk];
        for (int kk = 0; kk < k; kk++) for (int j = 0; j < n; j++) bT[j * k + kk] = b[kk * n + j];

        foreach (bool accumulate in new[] { false, true })
        {
            var expected = new double[m * n];
            for (int r = 0; r < m; r++)
                for (int j = 0; j < n; j++)
                {
                    double s = accumulate ? start[r * n + j] : 0;
                    for (int kk = 0; kk < k; kk++) s += (double)a[r * k + kk] * b[kk * n + j];
                    expected[r * n + j] = s;
                }
            foreach (var gemm in Pools)
            foreach (var (name, multiply) in new (string, Action<float[]>)[]
            {
                ($"plain, {gemm.TileVectorWidth} wide", c => gemm.Multiply(a, b, c, m, n, k, accumulate)),
                ($"A transposed, {gemm.TileVectorWidth} wide", c => gemm.MultiplyTransposedA(aT, b, c, m, n, k,
                    accumulate)),
                ("B transposed", c => gemm.MultiplyTransposedB(a, bT, c, m, n, k, accumulate)),
            })
            {
                float[] c = (float[])start.Clone();
                multiply(c);
                for (int i = 0; i < c.Length; i++)
                    Assert.True(Math.Abs(c[i] - expected[i]) <= 1e-5 * (k + 1),
                        $"{name}, accumulate {accumulate}: C[{i / n}, {i % n}] = {c[i]}, expected {expected[i]}");
            }
        }
    }
}
