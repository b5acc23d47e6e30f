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
}
