using ParetoQ.Runtime.Text;
using ParetoQ.Runtime.Format;
using ParetoQ.Runtime.Model;
using ParetoQ.Runtime.Quantization;

namespace ParetoQ.TestModels;

/// <summary>A generated model: its file, its config, and the dense fp32 value of every weight exactly as the file
/// encodes it.</summary>
public sealed record GeneratedModel(string Path, ModelConfig Config, IReadOnlyDictionary<string, float[]> DenseWeights);

/// <summary>
/// Writes small random-weight .pq models of both architectures at any weight format, deterministic from a seed.
/// Shapes are deliberately odd (not multiples of the packing tiles) so padding paths are exercised.
/// </summary>
public static class TestModelGenerator
{
    /// <summary>A tiny MobileLLM v1 / ParetoQ config: LLaMA-style, GQA, rotate_half RoPE.</summary>
    public static ModelConfig MobileLlm(bool tieEmbeddings = true, int layerRepeat = 1, int maxPositions = 256) => new()
    {
        Architecture = "mobilellm",
        VocabSize = 301,
        HiddenSize = 72,
        IntermediateSize = 136,
        NumLayers = 3,
        NumHeads = 6,
        NumKvHeads = 2,
        HeadDim = 12,
        MaxPositionEmbeddings = maxPositions,
        RmsNormEps = 1e-5f,
        RopeTheta = 10000,
        RopeLayout = RopeLayout.RotateHalf,
        TieWordEmbeddings = tieEmbeddings,
        LayerRepeat = layerRepeat,
        LayerTypes = [AttentionKind.Global, AttentionKind.Global, AttentionKind.Global],
        RopeLayers = [true, true, true],
    };

    /// <summary>
    /// A tiny MobileLLM-Pro config: local/global 3:1 with a small sliding window, interleaved RoPE with llama3 scaling,
    /// QK-norm on RoPE layers, NoPE global layers with temperature tuning (floor scale small enough to change within
    /// the test).
    /// </summary>
    public static ModelConfig MobileLlmPro(int slidingWindow = 8, int maxPositions = 512) => new()
    {
        Architecture = "mobilellm-pro",
        VocabSize = 261,
        HiddenSize = 80,
        IntermediateSize = 176,
        NumLayers = 5,
        NumHeads = 5,
        NumKvHeads = 1,
        HeadDim = 16,
        MaxPositionEmbeddings = maxPositions,
        RmsNormEps = 1e-5f,
        RopeTheta = 500000,
        RopeLayout = RopeLayout.Interleaved,
        RopeScaling = new Llama3RopeScaling(8, 1, 4, 16),
        TieWordEmbeddings = true,
        LayerTypes = [AttentionKind.Global, AttentionKind.Local, AttentionKind.Local, AttentionKind.Local,
            AttentionKind.Global],
        SlidingWindow = slidingWindow,
        UseQkNorm = true,
        RopeLayers = [false, true, true, true, false],
        TemperatureTuning = new AttentionTemperatureTuning(4, 0.1),
    };

    /// <summary>Writes a model with random weights: projections in <paramref name="projections"/>, embedding (and head)
    /// in <paramref name="embedding"/>.</summary>
    public static GeneratedModel Write(string path, ModelConfig config, WeightFormat projections,
        WeightFormat embedding, int seed, bool overwrite = true)
    {
        var rng = new Random(seed);
        var dense = new Dictionary<string, float[]>(StringComparer.Ordinal);
        var writer = new PqWriter(config.ToJson(), new PqProvenance(
            $"random weights, seed {seed}",
                WeightFormats.NominalBits(projections).ToString(System.Globalization.CultureInfo.InvariantCulture),
            "ParetoQ.TestModels", new Dictionary<string,
                string> { ["projections"] = WeightFormats.Name(projections),
                ["embedding"] = WeightFormats.Name(embedding) }));
        writer.SetTokenizer(ByteLevelVocabulary.Info(chatTokens: config.Architecture == "mobilellm-pro"),
            ByteLevelVocabulary.Ranks());

        int dim = config.HiddenSize;
        void AddMatrix(string name, int rows, int cols, WeightFormat format, float std)
        {
            var w = Gaussian(rng, rows * cols, std);
            if (WeightFormats.IsFloat(format))
            {
                writer.AddFloatTensor(name, format, [rows, cols], w);
                dense[name] = w.Select(v => FloatCodec.RoundTrip(format, v)).ToArray();
                return;
            }
            var q = Quantizer.QuantizeMatrix(format, w, rows, cols);
            writer.AddQuantizedTensor(name, q);
            // The dense truth is ParetoQ's fake-quant formula applied with the scales the quantizer chose.
            var fq = new float[w.Length];
            for (int r = 0; r < rows; r++)
                for (int c = 0; c < cols; c++)
                    fq[r * cols + c] = Quantizer.FakeQuantize(format, w[r * cols + c],
                        q.Scales[r * q.Groups + c / q.GroupSize]);
            dense[name] = fq;
        }
        void AddNorm(string name)
        {
            var w = Gaussian(rng, dim, 0.1f).Select(v => 1 + v).ToArray();
            writer.AddFloatTensor(name, WeightFormat.F32, [dim], w);
            dense[name] = w;
        }

        foreach (var t in ModelTensors.For(config))
        {
            if (t.IsNorm) AddNorm(t.Name);
            else AddMatrix(t.Name, t.Rows, t.Cols, t.Role is TensorRole.Embedding or TensorRole.Head ? embedding
                : projections, t.Role switch
            {
                TensorRole.Embedding => 1f,
                TensorRole.Query or TensorRole.Key => 1.5f / MathF.Sqrt(dim),
                TensorRole.Output => 0.5f / MathF.Sqrt(config.QueryDim),
                TensorRole.Down => 0.5f / MathF.Sqrt(config.IntermediateSize),
                _ => 1f / MathF.Sqrt(dim), // v, gate, up, untied head
            });
        }
        writer.Write(path, overwrite);
        return new GeneratedModel(path, config, dense);
    }

    /// <summary>Deterministic normal samples (Box–Muller) with the given standard deviation.</summary>
    public static float[] Gaussian(Random rng, int count, float std)
    {
        var v = new float[count];
        for (int i = 0; i < count; i++)
        {
            double u1 = 1.0 - rng.NextDouble(), u2 = rng.NextDouble();
            v[i] = (float)(Math.Sqrt(-2 * Math.Log(u1)) * Math.Cos(2 * Math.PI * u2) * std);
        }
        return v;
    }
}
