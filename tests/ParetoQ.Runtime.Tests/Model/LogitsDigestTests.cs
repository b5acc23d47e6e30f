using System.Numerics;
using System.Security.Cryptography;
using ParetoQ.Runtime.Backends;
using ParetoQ.Runtime.Backends.Cpu;
using ParetoQ.Runtime.Model;
using ParetoQ.Runtime.Quantization;
using ParetoQ.TestModels;
using Xunit.Abstractions;

namespace ParetoQ.Runtime.Tests;

/// <summary>
/// Pins the logits of the generated models bit for bit: a SHA-256 over every logit of every variant, in exact mode and
/// on the fast path, with both KV-cache types, chunked prefill and decode steps. Recorded at 084d000, before the
/// restructuring of issue 16; a change that alters numerics on purpose must say so and record the new digest.
/// </summary>
public sealed class LogitsDigestTests(ITestOutputHelper output)
{
    private const string ExactDigest = "EA1C552E19F5394F6DE24976A8C8A9FC3732C0677D1D89A77607319993E17421";
    private const string FastDigest = "3BFC628A1F7F6156C6E566187BECA0312B6F24A2E49464A62144959DC3F326FA";

    [Fact]
    public void Exact_mode_logits_are_unchanged() => Check(exact: true, ExactDigest);

    [Fact]
    public void Fast_path_logits_are_unchanged()
    {
        // The dense float matmul sums in Vector<float> lanes, so its rounding depends on the vector width.
        if (Vector<float>.Count != 8) throw new InvalidOperationException($"the digest was recorded with 8-lane Vector<float>, not {Vector<float>.Count}");
        Check(exact: false, FastDigest);
    }

    private void Check(bool exact, string expected)
    {
        using var dir = new TempDir();
        using var all = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        foreach (var row in ModelForwardTests.Variants())
        {
            string variant = (string)row[0];
            var (projections, embedding) = ((WeightFormat)row[1], (WeightFormat)row[2]);
            var gen = TestModelGenerator.Write(dir.File($"{variant}-{projections}-{embedding}.pq"),
                ModelForwardTests.ConfigFor(variant), projections, embedding, seed: 7);
            var options = exact ? CpuBackendOptions.ExactMode : new CpuBackendOptions { Threads = 2 };
            using var model = LanguageModel.Load(gen.Path, options);
            using var one = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
            foreach (var kv in new[] { KvCacheType.F32, KvCacheType.Int8 })
            {
                var prompt = ModelForwardTests.Prompt;
                using var s = new Session(model, new SessionOptions { AllLogits = true, KvCache = kv, MaxBatch = 5 });
                var logits = new float[20 * gen.Config.VocabSize];
                s.Forward(prompt.AsSpan(0, 20), logits);
                one.AppendData(MemoryMarshalBytes(logits));
                for (int i = 20; i < prompt.Length; i++) one.AppendData(MemoryMarshalBytes(s.Forward(prompt.AsSpan(i,
                    1))));
            }
            var digest = one.GetHashAndReset();
            output.WriteLine($"{variant} {WeightFormats.Name(projections)}/{WeightFormats.Name(embedding)}: {System.Convert.ToHexString(digest)}");
            all.AppendData(digest);
        }
        string actual = System.Convert.ToHexString(all.GetHashAndReset());
        output.WriteLine($"all: {actual}");
        Assert.Equal(expected, actual);
    }

    private static ReadOnlySpan<byte> MemoryMarshalBytes(ReadOnlySpan<float> values)
        => System.Runtime.InteropServices.MemoryMarshal.AsBytes(values);
}
