using ParetoQ.Fuzz;
using Xunit.Abstractions;

namespace ParetoQ.Runtime.Tests;

/// <summary>
/// CI's slice of paretoq-fuzz: a fixed seed and a few hundred cases per format, under the same time and memory bounds
/// as the documented 10,000-case run (docs/RELIABILITY.md). Each case must be accepted or refused with the reader's own
/// format error.
/// </summary>
public sealed class FuzzSliceTests(ITestOutputHelper output)
{
    [Theory]
    [InlineData("pq")]
    [InlineData("safetensors")]
    [InlineData("torch")]
    [InlineData("config")]
    [InlineData("tokenizer")]
    [InlineData("gguf")]
    [InlineData("llama2c")]
    [InlineData("http")]
    public void Mutated_inputs_are_accepted_or_refused_with_a_format_error(string format)
    {
        using var dir = new TempDir();
        var report = Fuzzer.Run(format, cases: 600, seed: 17, Fuzzer.DefaultLimits, dir.File("work"),
            dir.File("found"));
        output.WriteLine($"{format}: {report.Accepted} accepted, {report.Refused} refused, " +
            $"at most {report.MaxAllocatedBytes} bytes allocated");
        Assert.Empty(report.Findings);
        // Both outcomes occur, so the mutations reach past the first check and the readers accept what is valid.
        Assert.True(report.Accepted > 0 && report.Refused > 0, $"{report.Accepted} accepted, {report.Refused} refused");
    }

    /// <summary>
    /// The coverage-guided corpus (tests/fuzz-corpus, minimized by tools/fuzz-coverage.sh) and every input that once
    /// broke the contract (tests/fuzz-findings) replayed through their readers under the same bounds.
    /// </summary>
    [Fact]
    public void Corpus_and_past_findings_replay_within_the_contract()
    {
        var dirs = new[] { "fuzz-corpus", "fuzz-findings" }
            .Select(d => Path.Combine(TestData.RepoRoot(), "tests", d)).Where(Directory.Exists).ToList();
        var results = CorpusReplay.Run(dirs, Fuzzer.DefaultLimits);
        output.WriteLine($"{results.Count} inputs replayed");
        // Every format has a corpus, so a lost directory cannot pass unnoticed.
        Assert.Equal(Fuzzer.Formats.Order(), results.Select(r => r.Format).Distinct().Order());
        var broken = results.Where(r => r.Problem is not null)
            .Select(r => $"{r.Format} {Path.GetFileName(r.File)}: {r.Problem}").ToList();
        Assert.True(broken.Count == 0, string.Join("\n", broken));
    }

    [Fact]
    public void Replay_names_a_corpus_directory_that_is_no_format()
    {
        using var dir = new TempDir();
        Directory.CreateDirectory(Path.Combine(dir.Path, "pickle"));
        var result = Assert.Single(CorpusReplay.Run([dir.Path], Fuzzer.DefaultLimits));
        Assert.Contains("'pickle' is not a format", result.Problem);
    }
}
