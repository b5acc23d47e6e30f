using System.Diagnostics;
using System.Text;
using ParetoQ.Runtime.Format;
using ParetoQ.Runtime.Model;
using ParetoQ.Runtime.Quantization;
using ParetoQ.TestModels;
using Xunit.Abstractions;

namespace ParetoQ.Runtime.Tests;

/// <summary>
/// Thousands of random corruptions of a valid file. Each must either load or fail with <see cref="PqFormatException"/>
/// (or <see cref="ModelConfigException"/> from the model loader): no other exception, no hang, no allocation far beyond
/// the file's size.
/// </summary>
public sealed class CorruptionFuzzTests(ITestOutputHelper output)
{
    [Fact]
    public void Random_byte_flips_and_truncations()
    {
        using var dir = new TempDir();
        var gen = TestModelGenerator.Write(dir.File("valid.pq"), TestModelGenerator.MobileLlmPro(),
            WeightFormat.Ternary, WeightFormat.I8Row, seed: 9);
        byte[] valid = File.ReadAllBytes(gen.Path);
        int metaEnd = PqFile.HeaderSize + Encoding.UTF8.GetByteCount(PqBytes.Split(valid).Metadata);
        var rng = new Random(1234);
        var outcomes = new Dictionary<string, int>();
        for (int i = 0; i < 3000; i++)
        {
            byte[] bad = (byte[])valid.Clone();
            switch (rng.Next(4))
            {
                case 0: // flips anywhere
                    for (int k = rng.Next(1, 9); k > 0; k--) bad[rng.Next(bad.Length)] ^= (byte)(1 << rng.Next(8));
                    break;
                case 1: // flips in the header and metadata
                    for (int k = rng.Next(1, 5); k > 0; k--) bad[rng.Next(metaEnd)] ^= (byte)(1 << rng.Next(8));
                    break;
                case 2: // truncation
                    bad = bad[..rng.Next(bad.Length)];
                    break;
                default: // extension with random bytes
                    var tail = new byte[rng.Next(1, 200)];
                    rng.NextBytes(tail);
                    bad = [.. bad, .. tail];
                    break;
            }
            Tally(outcomes, TryLoad(dir.File("fuzz.pq"), bad));
        }
        Report(outcomes);
    }

    /// <summary>Mutates the metadata JSON and reseals the checksums, so the parser and validators (not just the
    /// checksums) see the damage.</summary>
    [Fact]
    public void Resealed_metadata_mutations()
    {
        using var dir = new TempDir();
        var gen = TestModelGenerator.Write(dir.File("valid.pq"), TestModelGenerator.MobileLlm(), WeightFormat.Q3Row,
            WeightFormat.F16, seed: 8);
        byte[] valid = File.ReadAllBytes(gen.Path);
        var (meta, data) = PqBytes.Split(valid);
        var rng = new Random(99);
        string[] replacements = ["0", "-1", "64", "1e300", "4294967296", "9223372036854775807", "null", "true", "\"\"",
            "[]", "{}", "\"q2_seq\"", "[1, 1]", "\"x\\u0000\""];
        var outcomes = new Dictionary<string, int>();
        for (int i = 0; i < 2000; i++)
        {
            var sb = new StringBuilder(meta);
            for (int k = rng.Next(1, 4); k > 0; k--)
            {
                int at = rng.Next(sb.Length);
                switch (rng.Next(4))
                {
                    case 0: sb[at] = (char)rng.Next(32, 127); break;
                    case 1: sb.Remove(at, Math.Min(rng.Next(1, 20), sb.Length - at)); break;
                    case 2: sb.Insert(at, meta.AsSpan(rng.Next(meta.Length - 30), 30)); break;
                    default:
                        // Replace one JSON value (the text after a colon) with an awkward one.
                        int colon = sb.ToString().IndexOf(": ", at, StringComparison.Ordinal);
                        if (colon < 0) break;
                        int end = colon + 2;
                        while (end < sb.Length && sb[end] is not (',' or '\n' or '}')) end++;
                        sb.Remove(colon + 2, end - colon - 2).Insert(colon + 2,
                            replacements[rng.Next(replacements.Length)]);
                        break;
                }
            }
            Tally(outcomes, TryLoad(dir.File("fuzz.pq"), PqBytes.Build(sb.ToString(), data)));
        }
        Report(outcomes);
    }

    private static string TryLoad(string path, byte[] bytes)
    {
        File.WriteAllBytes(path, bytes);
        long allocatedBefore = GC.GetAllocatedBytesForCurrentThread();
        var clock = Stopwatch.StartNew();
        string outcome;
        try
        {
            using var model = LanguageModel.Load(path);
            outcome = "loaded";
        }
        catch (PqFormatException)
        {
            outcome = "PqFormatException";
        }
        catch (ModelConfigException)
        {
            outcome = "ModelConfigException";
        }
        catch (Exception e)
        {
            throw new Xunit.Sdk.XunitException($"unexpected {e.GetType().Name}: {e.Message}\n{e.StackTrace}");
        }
        long allocated = GC.GetAllocatedBytesForCurrentThread() - allocatedBefore;
        Assert.True(allocated < 8L * bytes.Length + (4 << 20),
            $"loading a {bytes.Length}-byte file allocated {allocated} bytes");
        Assert.True(clock.Elapsed < TimeSpan.FromSeconds(10), $"loading took {clock.Elapsed}");
        return outcome;
    }

    private static void Tally(Dictionary<string, int> outcomes, string outcome) =>
        outcomes[outcome] = outcomes.GetValueOrDefault(outcome) + 1;

    private void Report(Dictionary<string, int> outcomes)
    {
        foreach (var (k, v) in outcomes.OrderBy(kv => kv.Key)) output.WriteLine($"{k}: {v}");
        Assert.True(outcomes.GetValueOrDefault("PqFormatException") > 0);
    }
}
