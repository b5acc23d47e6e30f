using ParetoQ.KernelCheck;
using ParetoQ.Runtime.Kernels;
using ParetoQ.Runtime.Quantization;
using Xunit.Abstractions;

namespace ParetoQ.Runtime.Tests;

/// <summary>
/// The kernel suite (tests/ParetoQ.KernelCheck, also run under qemu for NEON) on every path this CPU supports. To cover
/// a lower path the machine would not pick, the suite runs each supported path explicitly rather than only the best
/// one.
/// </summary>
public class KernelTests(ITestOutputHelper output)
{
    public static TheoryData<string, string> PathsAndFormats()
    {
        var data = new TheoryData<string, string>();
        // With every SIMD path switched off (DOTNET_EnableHWIntrinsic=0) only Scalar is left; its cases still check the
        // integer reference against the exact-mode bound.
        var paths = KernelDispatch.Supported.Where(p => p != KernelPath.Scalar).DefaultIfEmpty(KernelPath.Scalar);
        foreach (var p in paths)
            foreach (var f in KernelSuite.Formats)
                data.Add(KernelDispatch.Name(p), WeightFormats.Name(f));
        return data;
    }

    [Theory]
    [MemberData(nameof(PathsAndFormats))]
    public void Path_equals_scalar_reference_exactly(string pathName, string formatName)
    {
        var path = KernelDispatch.Parse(pathName);
        Assert.True(WeightFormats.TryParse(formatName, out var format));
        var failures = KernelSuite.Cases([path]).Where(c => c.Format == format)
            .Select(c => (c, problem: KernelSuite.Run(c))).Where(r => r.problem is not null)
            .Select(r => $"{r.c}: {r.problem}").ToList();
        Assert.True(failures.Count == 0, string.Join("\n", failures.Take(10)));
    }

    public static TheoryData<string> Paths()
    {
        var data = new TheoryData<string>();
        foreach (var p in KernelDispatch.Supported.Where(p => p != KernelPath.Scalar).DefaultIfEmpty(KernelPath.Scalar))
            data.Add(KernelDispatch.Name(p));
        return data;
    }

    [Theory]
    [MemberData(nameof(Paths))]
    public void Attention_kernels_equal_scalar_reference_exactly(string pathName)
    {
        var failures = AttentionSuite.Cases([KernelDispatch.Parse(pathName)])
            .Select(c => (c, problem: AttentionSuite.Run(c))).Where(r => r.problem is not null)
            .Select(r => $"{r.c}: {r.problem}").ToList();
        Assert.True(failures.Count == 0, string.Join("\n", failures.Take(10)));
    }

    public static TheoryData<string> FloatCases() => new(FloatSuite.Cases().Select(c => c.Name));

    public static TheoryData<string> ActivationCases() => new(ActivationSuite.Cases().Select(c => c.Name));

    [Theory]
    [MemberData(nameof(ActivationCases))]
    public void Vector_activation_work_matches_its_scalar_reference(string name)
    {
        // RmsNorm, rotary encoding and int8 activation quantization (ActivationSuite, also run under qemu for NEON).
        string? problem = ActivationSuite.Cases().Single(c => c.Name == name).Run();
        Assert.True(problem is null, problem);
    }

    [Theory]
    [MemberData(nameof(FloatCases))]
    public void Dense_float_path_matches_the_scalar_reference(string name)
    {
        // Widening of f16/bf16 on all bit patterns, then f32/f16/bf16 matmuls (FloatSuite, also run under qemu for
        // NEON).
        string? problem = FloatSuite.Cases().Single(c => c.Name == name).Run();
        Assert.True(problem is null, $"{name}: {problem}");
    }

    [Fact]
    public void Widening_refuses_a_format_that_is_not_16_bit_float()
    {
        var e = Assert.Throws<ArgumentException>(()
            => FloatMatMul.WidenRow(WeightFormat.F32, new byte[16], 0, new float[4]));
        Assert.Contains("f32 is not a 16-bit float format", e.Message);
    }

    [Fact]
    public void Vector_swiglu_matches_the_scalar_reference()
    {
        var rng = new Random(3);
        // Odd length for the tails; large magnitudes where e^−g overflows or vanishes; infinities and NaN pass through.
        var gate = Enumerable.Range(0, 1003).Select(i
            => (float)((rng.NextDouble() * 2 - 1) * (i % 5 == 0 ? 120 : 8))).ToArray();
        gate[7] = float.PositiveInfinity;
        gate[8] = float.NegativeInfinity;
        gate[9] = float.NaN;
        var up = Enumerable.Range(0, gate.Length).Select(_ => (float)(rng.NextDouble() * 4 - 2)).ToArray();
        var expected = (float[])gate.Clone();
        ScalarKernels.SwiGlu(up, expected);
        var actual = (float[])gate.Clone();
        ActivationKernels.SwiGlu(up, actual);
        for (int i = 0; i < gate.Length; i++)
        {
            if (!float.IsFinite(expected[i])) { Assert.Equal(expected[i], actual[i]); continue; }
            Assert.True(Math.Abs(actual[i] - expected[i]) <= 4e-7f * Math.Abs(expected[i]) + 1e-30f,
                $"element {i} (gate {gate[i]}): {actual[i]:R}, scalar {expected[i]:R}");
        }
    }

    [Fact]
    public void Scalar_integer_path_is_within_the_quantization_bound_of_exact_mode()
    {
        var failures = KernelSuite.Cases([KernelPath.Scalar]).Select(c => (c, problem: KernelSuite.Run(c)))
            .Where(r => r.problem is not null).Select(r => $"{r.c}: {r.problem}").ToList();
        Assert.True(failures.Count == 0, string.Join("\n", failures.Take(10)));
    }

    [Fact]
    public void Dispatch_offers_every_x86_path_this_cpu_has()
    {
        // What the CPU's flags show, less what the environment switches off (as CI's lower-path runs do), is what
        // dispatch must offer: a path lost to a detection slip would leave the suite covering less without a word. The
        // paths the hardware lacks cannot be tested on this machine; the output names them.
        Assert.Equal(System.Runtime.InteropServices.Architecture.X64,
            System.Runtime.InteropServices.RuntimeInformation.ProcessArchitecture);
        var flags = File.ReadLines("/proc/cpuinfo").First(l
            => l.StartsWith("flags", StringComparison.Ordinal)).Split(' ').ToHashSet();
        bool Off(string isa) => Environment.GetEnvironmentVariable("DOTNET_Enable" + isa) == "0"
            || Environment.GetEnvironmentVariable("DOTNET_EnableHWIntrinsic") == "0";
        bool avx2 = flags.Contains("avx2") && flags.Contains("fma") && !Off("AVX2");
        bool avx512 = new[] { "avx512f", "avx512bw", "avx512cd", "avx512dq", "avx512vl" }.All(flags.Contains)
            && !Off("AVX512");
        var expected = new Dictionary<KernelPath, bool>
        {
            [KernelPath.Avx2] = avx2,
            [KernelPath.AvxVnni] = avx2 && flags.Contains("avx_vnni") && !Off("AVXVNNI"),
            [KernelPath.Avx512] = avx512,
            [KernelPath.Avx512Gfni] = avx512 && flags.Contains("gfni") && !Off("GFNI"),
            [KernelPath.Neon] = false,
        };
        foreach (var (path, offered) in expected)
        {
            Assert.True(offered == KernelDispatch.Supported.Contains(path),
                $"{KernelDispatch.Name(path)}: the CPU flags and environment say {(offered ? "offered" : "absent")}, dispatch says the opposite");
            if (!offered) output.WriteLine($"{KernelDispatch.Name(path)}: not on this machine, so not covered here");
        }
        var best = new[] { KernelPath.Avx512Gfni, KernelPath.Avx512, KernelPath.AvxVnni, KernelPath.Avx2 }
            .FirstOrDefault(p => expected[p], KernelPath.Scalar);
        Assert.Equal(best, KernelDispatch.Widest);
    }

    [Fact]
    public void Quantized_activations_hold_what_they_were_sized_for_and_refuse_more()
    {
        using var q = new QuantizedActivations(2, 100);
        q.Quantize(new float[2 * 100], 2, 100);
        q.Quantize(new float[1 * 128], 1, 128); // rows are padded to 128, so 128 columns fit as well
        Assert.Contains("exceed",
            Assert.Throws<ArgumentOutOfRangeException>(() => q.Quantize(new float[3 * 100], 3, 100)).Message);
        Assert.Contains("exceed",
            Assert.Throws<ArgumentOutOfRangeException>(() => q.Quantize(new float[2 * 129], 2, 129)).Message);
    }

    [Fact]
    public void Activation_quantization_rounds_half_to_even_and_pads_with_zeros()
    {
        var x = new float[] { 127f, 0.5f, 1.5f, -2.5f, -127f, 63.5f, 0f, 3f, 1f };
        var dst = new sbyte[16];
        float scale = QuantizedActivations.QuantizeRow(x, dst);
        Assert.Equal(1f, scale);
        Assert.Equal(new sbyte[] { 127, 0, 2, -2, -127, 64, 0, 3, 1, 0, 0, 0, 0, 0, 0, 0 }, dst);
        Assert.True(float.IsNaN(QuantizedActivations.QuantizeRow([1f, float.NaN], dst)));
        Assert.Equal(0f, QuantizedActivations.QuantizeRow([0f, -0f], dst));
    }

    [Fact]
    public void Unknown_or_unsupported_path_names_are_refused_with_the_supported_list()
    {
        var e = Assert.Throws<ArgumentException>(() => KernelDispatch.Parse("sse9"));
        Assert.Contains("avx512", e.Message);
        if (!KernelDispatch.IsSupported(KernelPath.Neon))
            Assert.Contains("not supported by this CPU",
                Assert.Throws<NotSupportedException>(() => KernelDispatch.Parse("neon")).Message);
    }
}
