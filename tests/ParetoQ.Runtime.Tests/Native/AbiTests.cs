using System.Runtime.InteropServices;
using ParetoQ.Abi;

namespace ParetoQ.Runtime.Tests;

/// <summary>
/// The C# side of the C ABI's layout: the same sizes and offsets native/tests/test_abi.c pins with static asserts
/// against native/include/paretoq.h, so neither side can change without the other's test failing.
/// </summary>
public sealed class AbiTests
{
    public static TheoryData<Type, string, int> Offsets => new()
    {
        { typeof(PqModelParams), nameof(PqModelParams.VerifyChecksums), 4 },
        { typeof(PqContextParams), nameof(PqContextParams.Threads), 4 },
        { typeof(PqContextParams), nameof(PqContextParams.ContextLength), 8 },
        { typeof(PqContextParams), nameof(PqContextParams.KvType), 12 },
        { typeof(PqContextParams), nameof(PqContextParams.Exact), 16 },
        { typeof(PqSamplerParams), nameof(PqSamplerParams.Temperature), 4 },
        { typeof(PqSamplerParams), nameof(PqSamplerParams.TopK), 8 },
        { typeof(PqSamplerParams), nameof(PqSamplerParams.TopP), 12 },
        { typeof(PqSamplerParams), nameof(PqSamplerParams.MinP), 16 },
        { typeof(PqSamplerParams), nameof(PqSamplerParams.RepeatPenalty), 20 },
        { typeof(PqSamplerParams), nameof(PqSamplerParams.RepeatLastN), 24 },
        { typeof(PqSamplerParams), nameof(PqSamplerParams.Seed), 32 },
        { typeof(PqModelInfo), nameof(PqModelInfo.VocabSize), 4 },
        { typeof(PqModelInfo), nameof(PqModelInfo.MaxContext), 8 },
        { typeof(PqModelInfo), nameof(PqModelInfo.Layers), 12 },
        { typeof(PqModelInfo), nameof(PqModelInfo.HiddenSize), 16 },
        { typeof(PqModelInfo), nameof(PqModelInfo.BosId), 20 },
        { typeof(PqModelInfo), nameof(PqModelInfo.EosId), 24 },
        { typeof(PqModelInfo), nameof(PqModelInfo.FileBytes), 32 },
        { typeof(PqModelInfo), nameof(PqModelInfo.Parameters), 40 },
        { typeof(PqModelInfo), nameof(PqModelInfo.Architecture), 48 },
        { typeof(PqModelInfo), nameof(PqModelInfo.Bits), 80 },
        { typeof(PqGenerationStats), nameof(PqGenerationStats.PromptTokens), 4 },
        { typeof(PqGenerationStats), nameof(PqGenerationStats.GeneratedTokens), 8 },
        { typeof(PqGenerationStats), nameof(PqGenerationStats.StopReason), 12 },
        { typeof(PqGenerationStats), nameof(PqGenerationStats.PrefillTokensPerSecond), 16 },
        { typeof(PqGenerationStats), nameof(PqGenerationStats.DecodeTokensPerSecond), 24 },
    };

    [Theory]
    [MemberData(nameof(Offsets))]
    public void Field_offsets_match_the_header(Type type, string field, int offset) =>
        Assert.Equal(offset, (int)Marshal.OffsetOf(type, field));

    [Fact]
    public unsafe void Struct_sizes_and_constants_match_the_header()
    {
        Assert.Equal(8, sizeof(PqModelParams));
        Assert.Equal(20, sizeof(PqContextParams));
        Assert.Equal(40, sizeof(PqSamplerParams));
        Assert.Equal(96, sizeof(PqModelInfo));
        Assert.Equal(32, sizeof(PqGenerationStats));
        Assert.Equal(sizeof(PqModelInfo), Marshal.SizeOf<PqModelInfo>());

        // The header's enum values and constants, read from the header itself.
        string header = File.ReadAllText(Path.Combine(TestData.RepoRoot(), "native", "include", "paretoq.h"));
        Assert.Contains($"#define PQ_ABI_VERSION {PqAbi.Version}", header);
        foreach (var status in Enum.GetValues<PqStatus>())
        {
            string name = status == PqStatus.Ok ? "PQ_OK"
                : "PQ_ERR_" + System.Text.RegularExpressions.Regex.Replace(status.ToString(), "(?<=[a-z0-9])([A-Z])",
                "_$1").ToUpperInvariant();
            Assert.Matches($@"\b{name} = {(int)status}\b", header);
        }
        Assert.Matches(@"PQ_KV_INT8 = 0, PQ_KV_F32 = 1", header);
        Assert.Matches(@"PQ_STOP_MAX_TOKENS = 0, PQ_STOP_EOS = 1, PQ_STOP_CONTEXT_FULL = 3, PQ_STOP_CANCELLED = 4",
            header);
        Assert.Equal((int)Runtime.Generation.StopReason.ContextFull, (int)PqStopReason.ContextFull);
        Assert.Equal((int)Runtime.Generation.StopReason.Cancelled, (int)PqStopReason.Cancelled);
        Assert.Equal((int)Runtime.Generation.StopReason.EndOfSequence, (int)PqStopReason.EndOfSequence);
    }
}
