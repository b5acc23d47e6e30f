using System.Text.Json;
using ParetoQ.Bench;

namespace ParetoQ.Runtime.Tests;

/// <summary>
/// <c>paretoq-bench model</c> as llama-bench users expect it: defaults that fit any model's context, repetitions with
/// mean ± sd, markdown, CSV and JSON lines, and rows named by backend and threads, on the shipped model.
/// </summary>
public sealed class ModelBenchTests
{
    private static string ShippedModel => Path.Combine(TestData.RepoRoot(), "models", "stories260K-2bit.pq");

    [Fact]
    public void Lengths_past_the_context_are_shortened_with_a_note_and_repeats_dropped()
    {
        var notes = new List<string>();
        var (prompts, decode) = ModelBench.FitContext([128, 512, 2048], 32, 512, notes);
        Assert.Equal([128, 480], prompts);
        Assert.Equal(32, decode);
        Assert.Equal(2, notes.Count);
        Assert.Contains("prompt 2048 shortened to 480", notes[1]);

        notes.Clear();
        (prompts, decode) = ModelBench.FitContext([16], 1000, 64, notes);
        Assert.Equal(32, decode);
        Assert.Equal([16], prompts);
        Assert.Contains("decode 1000 shortened to 32", Assert.Single(notes));

        notes.Clear();
        (prompts, decode) = ModelBench.FitContext([128], 32, 4096, notes);
        Assert.Equal([128], prompts);
        Assert.Empty(notes);
    }

    [Fact]
    public void A_spread_is_the_mean_and_the_sample_standard_deviation()
    {
        var s = Spread.Of([2.0, 4.0, 4.0, 4.0, 5.0, 5.0, 7.0, 9.0]);
        Assert.Equal(5.0, s.Mean, 12);
        Assert.Equal(Math.Sqrt(32.0 / 7), s.Sd, 12);
        Assert.Equal(0, Spread.Of([3.0]).Sd);
    }

    [Fact]
    public void Each_format_carries_the_spread_and_the_facts()
    {
        var report = new BenchReport("model");
        report.Fact("device", "cpu-avx2");
        report.Fact("threads", 2);
        report.Footer("build", "0.6.0+abc");
        report.Row(("model", "a,b.pq"), ("decode_tok/s", new Spread(100.25, 3.5, 3)));
        report.Row(("model", "c.pq"), ("decode_tok/s", new Spread(90, 1, 3)));

        string md = Print(report, ReportFormat.Markdown);
        var lines = md.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.Matches(@"^\| +device \| +threads \| +model \| +decode_tok/s \|$", lines[0]);
        Assert.Matches(@"^\| -+: \| -+: \| -+: \| -+: \|$", lines[1]);
        Assert.Contains("| 100.25 ± 3.50 |", lines[2]);
        Assert.Equal("build: 0.6.0+abc", lines[^1]);

        var csv = Print(report, ReportFormat.Csv).Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.Equal("device,threads,build,model,decode_tok/s,decode_tok/s_sd", csv[0]);
        Assert.Equal("cpu-avx2,2,0.6.0+abc,\"a,b.pq\",100.25,3.5", csv[1]);

        var jsonl = Print(report, ReportFormat.Jsonl).Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.Equal(2, jsonl.Length);
        using var first = JsonDocument.Parse(jsonl[0]);
        Assert.Equal("cpu-avx2", first.RootElement.GetProperty("device").GetString());
        Assert.Equal(3.5, first.RootElement.GetProperty("decode_tok/s_sd").GetDouble());

        using var json = JsonDocument.Parse(Print(report, ReportFormat.Json));
        Assert.Equal(90, json.RootElement.GetProperty("results")[1].GetProperty("decode_tok/s").GetDouble());
    }

    private static string Print(BenchReport report, ReportFormat format)
    {
        var w = new StringWriter();
        report.Print(format, w);
        return w.ToString();
    }

    [Fact]
    public void The_shipped_model_runs_with_the_defaults_and_every_row_has_a_spread()
    {
        var (exit, output, error) = ProgramRunner.Run("paretoq-bench", "", [], "model", "-m", ShippedModel);
        Assert.True(exit == 0, $"exit {exit}: {error}");
        Assert.Contains("prompt 2048 shortened to", error);
        var rows = output.Split('\n').Where(l => l.Contains("stories260K-2bit.pq")).ToList();
        Assert.Equal(2, rows.Count); // 128, and 512 and 2048 both shortened to one length
        Assert.All(rows, r => Assert.Equal(2, r.Split('±').Length - 1));
        Assert.All(rows, r => Assert.Contains("| cpu-", r));
        Assert.Contains(output.Split('\n'), l => l.StartsWith("build: ", StringComparison.Ordinal));
        Assert.Contains(output.Split('\n'), l => l.StartsWith("cpu: ", StringComparison.Ordinal));
    }

    [Fact]
    public void Repetitions_below_one_and_unknown_formats_are_usage_errors()
    {
        var r = ProgramRunner.Run("paretoq-bench", "", [], "model", "-m", ShippedModel, "-r", "0");
        Assert.Equal(2, r.Exit);
        Assert.Contains("--repetitions 0 must be at least 1", r.Err);
        r = ProgramRunner.Run("paretoq-bench", "", [], "model", "-m", ShippedModel, "-o", "xml");
        Assert.Equal(2, r.Exit);
        Assert.Contains("unknown output format 'xml'", r.Err);
    }
}
