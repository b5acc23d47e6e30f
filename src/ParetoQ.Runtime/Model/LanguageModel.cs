using ParetoQ.Runtime.Backends;
using ParetoQ.Runtime.Backends.Cpu;
using ParetoQ.Runtime.Format;
using ParetoQ.Runtime.Quantization;

namespace ParetoQ.Runtime.Model;

/// <summary>The weights of one decoder layer, as backend handles. Shapes are (out, in).</summary>
public sealed record LayerWeights(
    BackendWeight AttentionNorm, // (1, dim)
    BackendWeight Query,         // (heads·hd, dim)
    BackendWeight Key,           // (kvHeads·hd, dim)
    BackendWeight Value,         // (kvHeads·hd, dim)
    BackendWeight Output,        // (dim, heads·hd)
    BackendWeight FfnNorm,       // (1, dim)
    BackendWeight Gate,          // (ffn, dim)
    BackendWeight Up,            // (ffn, dim)
    BackendWeight Down);         // (dim, ffn)

/// <summary>
/// A loaded model: the open .pq file, its config, and every weight resolved, shape-checked and handed to the backend
/// (for the CPU, views into the memory map). Immutable and shareable by several <see cref="Session"/>s.
/// </summary>
public sealed class LanguageModel : IDisposable
{
    public PqFile File { get; }
    public ModelConfig Config { get; }
    public IComputeBackend Backend { get; }
    public BackendWeight Embedding { get; }      // (vocab, dim)
    public BackendWeight FinalNorm { get; }      // (1, dim)
    public BackendWeight Head { get; }           // (vocab, dim); the embedding itself when tied
    public IReadOnlyList<LayerWeights> Layers { get; }
    /// <summary>Per weight layer.</summary>
    public IReadOnlyList<LayerAttention> Attention { get; }

    private readonly bool _ownsFile;
    private bool _ownsBackend;

    /// <summary>
    /// Opens a .pq file and loads it on <paramref name="backend"/>, or on a new <see cref="CpuBackend"/> with default
    /// options, which the model then owns and disposes. <paramref name="memory"/> says whether the weights are mapped
    /// or read into huge-page memory (<see cref="WeightMemory"/>; by default, whichever decodes faster here).
    /// </summary>
    public static LanguageModel Load(string path, IComputeBackend? backend = null,
        WeightMemory memory = WeightMemory.Auto)
    {
        var file = PqFile.Open(path, memory: memory);
        IComputeBackend? owned = null;
        try
        {
            if (backend is null) backend = owned = new CpuBackend();
            return new LanguageModel(file, backend, ownsFile: true) { _ownsBackend = owned is not null };
        }
        catch
        {
            owned?.Dispose();
            file.Dispose();
            throw;
        }
    }

    /// <summary>Opens a .pq file on a new CPU backend with these options (threads, kernel path, exact mode).</summary>
    public static LanguageModel Load(string path, CpuBackendOptions options, WeightMemory memory = WeightMemory.Auto)
    {
        var backend = ComputeDevice.Cpu(options);
        try
        {
            var model = Load(path, backend, memory);
            model._ownsBackend = true;
            return model;
        }
        catch
        {
            backend.Dispose();
            throw;
        }
    }

    public LanguageModel(PqFile file, IComputeBackend backend, bool ownsFile = false)
    {
        File = file;
        Backend = backend;
        _ownsFile = ownsFile;
        var c = Config = ModelConfig.Parse(file.Config, file.Path);
        int dim = c.HiddenSize;
        var used = new HashSet<string>(StringComparer.Ordinal);

        BackendWeight Matrix(TensorRole role, int layer = -1)
        {
            string name = ModelTensors.Name(role, layer);
            var (rows, cols) = ModelTensors.Shape(c, role);
            var t = file[name];
            used.Add(name);
            if (t.Shape.Count != 2 || t.Shape[0] != rows || t.Shape[1] != cols)
                throw new PqFormatException(file.Path, name,
                    $"shape {t.ShapeText} does not match the config, which needs [{rows}, {cols}]");
            return backend.Upload(t, rows, cols);
        }

        BackendWeight Norm(TensorRole role, int layer = -1)
        {
            string name = ModelTensors.Name(role, layer);
            var t = file[name];
            used.Add(name);
            if (t.Format != WeightFormat.F32) throw new PqFormatException(file.Path, name,
                $"norm weights must be f32, not {WeightFormats.Name(t.Format)}");
            if (t.Shape.Count != 1 || t.Shape[0] != dim) throw new PqFormatException(file.Path, name,
                $"shape {t.ShapeText} does not match the config, which needs [{dim}]");
            return backend.Upload(t, 1, dim);
        }

        Embedding = Matrix(TensorRole.Embedding);
        FinalNorm = Norm(TensorRole.FinalNorm);
        if (c.TieWordEmbeddings)
        {
            string head = ModelTensors.Name(TensorRole.Head);
            if (file.TryGetTensor(head, out _))
                throw new PqFormatException(file.Path, head, "is present but the config says tie_word_embeddings");
            Head = Embedding;
        }
        else
        {
            Head = Matrix(TensorRole.Head);
        }

        var layers = new LayerWeights[c.NumLayers];
        var attention = new LayerAttention[c.NumLayers];
        float[] invFreq = RopeInverseFrequencies(c);
        for (int i = 0; i < c.NumLayers; i++)
        {
            layers[i] = new LayerWeights(
                Norm(TensorRole.AttentionNorm, i),
                Matrix(TensorRole.Query, i),
                Matrix(TensorRole.Key, i),
                Matrix(TensorRole.Value, i),
                Matrix(TensorRole.Output, i),
                Norm(TensorRole.FfnNorm, i),
                Matrix(TensorRole.Gate, i),
                Matrix(TensorRole.Up, i),
                Matrix(TensorRole.Down, i));
            attention[i] = new LayerAttention(
                AttentionWindow.Of(c, i), c.NumHeads, c.NumKvHeads, c.HeadDim,
                c.RopeLayers[i], c.RopeLayout, invFreq, c.UseQkNorm, c.RmsNormEps, c.TemperatureTuning);
        }
        foreach (var t in file.Tensors)
            if (!used.Contains(t.Name)) throw new PqFormatException(file.Path, t.Name,
                "is not used by a " + c.Architecture + " model with this config");
        Layers = layers;
        Attention = attention;
    }

    /// <summary>RoPE inverse frequencies θ^(−2i/d) for i &lt; d/2, with Llama-3 scaling applied when
    /// configured.</summary>
    public static float[] RopeInverseFrequencies(ModelConfig c)
    {
        int half = c.HeadDim / 2;
        var inv = new float[half];
        for (int i = 0; i < half; i++)
        {
            double f = 1.0 / Math.Pow(c.RopeTheta, 2.0 * i / c.HeadDim);
            if (c.RopeScaling is { } s)
            {
                double lowWavelen = s.OriginalMaxPositionEmbeddings / s.LowFreqFactor;
                double highWavelen = s.OriginalMaxPositionEmbeddings / s.HighFreqFactor;
                double wavelen = 2 * Math.PI / f;
                if (wavelen > lowWavelen)
                {
                    f /= s.Factor;
                }
                else if (wavelen >= highWavelen)
                {
                    double smooth = (s.OriginalMaxPositionEmbeddings / wavelen - s.LowFreqFactor) / (s.HighFreqFactor - s.LowFreqFactor);
                    f = (1 - smooth) * f / s.Factor + smooth * f;
                }
            }
            inv[i] = (float)f;
        }
        return inv;
    }

    public void Dispose()
    {
        if (_ownsBackend) Backend.Dispose();
        if (_ownsFile) File.Dispose();
    }
}
