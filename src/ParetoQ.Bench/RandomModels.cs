using ParetoQ.CommandLine;
using System.Runtime.InteropServices;
using ParetoQ.Runtime.Format;
using ParetoQ.Runtime.Model;
using ParetoQ.Runtime.Quantization;
using ParetoQ.Runtime.Text;

namespace ParetoQ.Bench;

/// <summary>
/// Full-size models with random weights, for speed only: each packed tensor gets random valid codes and plausible
/// scales, so reading and computing cost exactly what a trained checkpoint of the same shape costs.
/// </summary>
public static class RandomModels
{
    /// <summary>The architectures <c>paretoq-bench model</c> knows, by name.</summary>
    public static ModelConfig Preset(string name) => name switch
    {
        // MobileLLM-ParetoQ-1B (REFERENCE.md §3): 54 layers, 1280, 20/5 heads, FFN 3584, vocab 32000, tied head.
        "mobilellm-1b" => new ModelConfig
        {
            Architecture = "mobilellm", VocabSize = 32000, HiddenSize = 1280, IntermediateSize = 3584, NumLayers = 54,
            NumHeads = 20, NumKvHeads = 5, HeadDim = 64, MaxPositionEmbeddings = 4096, RmsNormEps = 1e-5f,
                RopeTheta = 10000,
            RopeLayout = RopeLayout.RotateHalf, TieWordEmbeddings = true,
            LayerTypes = Enumerable.Repeat(AttentionKind.Global, 54).ToArray(),
                RopeLayers = Enumerable.Repeat(true, 54).ToArray(),
        },
        // MobileLLM-Pro: 30 layers, 20/4 heads, FFN 6144, vocab 202048, global layers 0,4,…,28,29, window 512.
        "mobilellm-pro-1b" => new ModelConfig
        {
            Architecture = "mobilellm-pro", VocabSize = 202048, HiddenSize = 1280, IntermediateSize = 6144,
                NumLayers = 30,
            NumHeads = 20, NumKvHeads = 4, HeadDim = 64, MaxPositionEmbeddings = 131072, RmsNormEps = 1e-5f,
                RopeTheta = 500000,
            RopeLayout = RopeLayout.Interleaved, RopeScaling = new Llama3RopeScaling(16, 1, 4, 8192),
                TieWordEmbeddings = true,
            LayerTypes = Enumerable.Range(0, 30).Select(i => i % 4 == 0 || i == 29 ? AttentionKind.Global
                : AttentionKind.Local).ToArray(),
            SlidingWindow = 512, UseQkNorm = true,
            RopeLayers = Enumerable.Range(0, 30).Select(i => !(i % 4 == 0 || i == 29)).ToArray(),
            TemperatureTuning = new AttentionTemperatureTuning(8192, 0.1),
        },
        // A few MB, for smoke runs (CI runs it under qemu on the arm64 build).
        "tiny" => new ModelConfig
        {
            Architecture = "mobilellm", VocabSize = 512, HiddenSize = 256, IntermediateSize = 640, NumLayers = 4,
            NumHeads = 4, NumKvHeads = 2, HeadDim = 64, MaxPositionEmbeddings = 4096, RmsNormEps = 1e-5f,
                RopeTheta = 10000,
            RopeLayout = RopeLayout.RotateHalf, TieWordEmbeddings = true,
            LayerTypes = Enumerable.Repeat(AttentionKind.Global, 4).ToArray(),
                RopeLayers = Enumerable.Repeat(true, 4).ToArray(),
        },
        _ => throw new UsageException($"unknown model preset '{name}' (expected mobilellm-1b, mobilellm-pro-1b or tiny)"),
    };

    public static readonly string[] PresetNames = ["mobilellm-1b", "mobilellm-pro-1b", "tiny"];

    /// <summary>
    /// Writes a random model of <paramref name="config"/> with projections and embedding in the given formats, and the
    /// byte-level vocabulary or, given <paramref name="llamaTokenizerJson"/>, that LLaMA-style tokenizer.json (such
    /// models export to GGUF, so llama.cpp can run the same weights).
    /// </summary>
    public static void Write(string path, ModelConfig config, WeightFormat projections, WeightFormat embedding,
        int seed, string? llamaTokenizerJson = null)
    {
        var rng = new Random(seed);
        var writer = new PqWriter(config.ToJson(), new PqProvenance($"random weights for benchmarks, seed {seed}",
            WeightFormats.NominalBits(projections).ToString(System.Globalization.CultureInfo.InvariantCulture),
                "paretoq-bench",
            new Dictionary<string,
                string> { ["projections"] = WeightFormats.Name(projections),
                ["embedding"] = WeightFormats.Name(embedding) }));
        if (llamaTokenizerJson is null) writer.SetTokenizer(ByteLevelVocabulary.Info(chatTokens: false),
            ByteLevelVocabulary.Ranks());
        else
        {
            var (info, bytes, tokenizer) = Tokenizers.LlamaTokenizerJson(llamaTokenizerJson);
            if (tokenizer.VocabSize > config.VocabSize)
                throw new TokenizerException(llamaTokenizerJson,
                    $"the tokenizer has {tokenizer.VocabSize} ids but the model's vocabulary is {config.VocabSize}");
            writer.SetTokenizer(info, bytes);
        }
        int dim = config.HiddenSize;
        void Matrix(string name, int rows, int cols, WeightFormat format, float std)
            => writer.AddTensor(name, format, [rows, cols], RandomTensor(format, rows, cols, std, rng));
        void Norm(string name)
            => writer.AddFloatTensor(name, WeightFormat.F32, [dim], Enumerable.Repeat(1f, dim).ToArray());

        foreach (var t in ModelTensors.For(config))
        {
            if (t.IsNorm) Norm(t.Name);
            else Matrix(t.Name, t.Rows, t.Cols, t.Role is TensorRole.Embedding or TensorRole.Head ? embedding
                : projections, t.Role switch
            {
                // Logits of std ~3 (the final norm gives h an RMS of 1): a plausible next-token distribution, so
                // perplexity comparisons with llama.cpp on these weights are meaningful rather than overflowing.
                TensorRole.Embedding => 3f / MathF.Sqrt(dim),
                TensorRole.Output => 0.5f / MathF.Sqrt(config.QueryDim),
                TensorRole.Down => 0.5f / MathF.Sqrt(config.IntermediateSize),
                _ => 1f / MathF.Sqrt(dim),
            });
        }
        writer.Write(path, overwrite: true);
    }

    // Random codes drawn uniformly from each format's code range, scales chosen so weights have about the given std.
    private static byte[] RandomTensor(WeightFormat format, int rows, int cols, float std, Random rng)
    {
        if (WeightFormats.IsFloat(format))
        {
            var values = new float[(long)rows * cols];
            for (long i = 0; i < values.LongLength; i++) values[i] = (float)((rng.NextDouble() * 2 - 1) * std * 1.7);
            return FloatCodec.Encode(format, values);
        }
        var layout = new PackedLayout(format, rows, cols);
        var data = new byte[layout.TotalBytes];
        var codes = data.AsSpan(0, (int)layout.CodeBytes);
        rng.NextBytes(codes);
        if (format == WeightFormat.Ternary)
            for (int i = 0; i < codes.Length; i++) codes[i] = TernaryFix[codes[i]];
        float scale = format switch
        {
            WeightFormat.I8Row => std * 1.7f / 128,
            WeightFormat.Q4Row or WeightFormat.Q4G32 => std * 1.7f / 8,
            WeightFormat.Q3Row => std * 1.7f / 4,
            _ => std * 1.5f,
        };
        MemoryMarshal.Cast<byte, float>(data.AsSpan((int)layout.CodeBytes)).Fill(scale);
        return data;
    }

    // Maps each 2-bit field holding the unused code 3 to 1 (zero), so ternary tensors hold only codes 0..2.
    private static readonly byte[] TernaryFix = Enumerable.Range(0, 256).Select(b =>
    {
        int r = 0;
        for (int f = 0; f < 4; f++)
        {
            int c = (b >> (2 * f)) & 3;
            r |= (c == 3 ? 1 : c) << (2 * f);
        }
        return (byte)r;
    }).ToArray();
}
