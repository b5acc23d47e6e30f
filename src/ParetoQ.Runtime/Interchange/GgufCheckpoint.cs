using System.Globalization;
using ParetoQ.Runtime.Conversion;
using ParetoQ.Runtime.Format;
using ParetoQ.Runtime.Model;
using ParetoQ.Runtime.Text;

namespace ParetoQ.Runtime.Interchange;

/// <summary>
/// A GGUF file of llama.cpp's <c>llama</c> architecture presented to the converter under Hugging Face names, as the
/// llama2.c reader is. Every tensor reads as fp32 values equal to llama.cpp's own dequantization; the converter then
/// maps each onto a .pq grid where that grid holds the values exactly, and says what it did where it could not.
/// GGUF stores q and k rows in llama.cpp's adjacent-pair RoPE layout; they are read back in the rotate-half order our
/// GGUF export started from, so .pq → GGUF → .pq gives the same rows.
/// </summary>
public sealed class GgufCheckpoint : ISourceCheckpoint
{
    // The llama.* keys this importer understands; any other would change the computation in a way it does not know.
    private static readonly HashSet<string> LlamaKeys = new(StringComparer.Ordinal)
    {
        "vocab_size", "context_length", "embedding_length", "block_count", "feed_forward_length",
        "attention.head_count", "attention.head_count_kv", "attention.layer_norm_rms_epsilon", "attention.key_length",
        "attention.value_length", "rope.dimension_count", "rope.freq_base", "rope.scaling.type",
        "rope.scaling.factor", "expert_count", "expert_used_count",
    };

    private static readonly Dictionary<string, string> LayerNames = new(StringComparer.Ordinal)
    {
        ["attn_norm"] = "input_layernorm", ["attn_q"] = "self_attn.q_proj", ["attn_k"] = "self_attn.k_proj",
        ["attn_v"] = "self_attn.v_proj", ["attn_output"] = "self_attn.o_proj",
        ["ffn_norm"] = "post_attention_layernorm",
        ["ffn_gate"] = "mlp.gate_proj", ["ffn_up"] = "mlp.up_proj", ["ffn_down"] = "mlp.down_proj",
    };

    private readonly GgufFile _file;
    private readonly Dictionary<string, (SourceTensor Tensor, GgufTensor Gguf, int PermuteHeadDim)> _byName;

    public string Directory { get; }
    public IReadOnlyList<string> Files => [_file.Path];
    public IReadOnlyList<SourceTensor> Tensors { get; }
    public ModelConfig Config { get; }
    public GgufFile File => _file;

    private GgufCheckpoint(GgufFile file, ModelConfig config)
    {
        _file = file;
        Config = config;
        Directory = Path.GetDirectoryName(Path.GetFullPath(file.Path))!;
        _byName = new Dictionary<string, (SourceTensor, GgufTensor, int)>(StringComparer.Ordinal);
        var tensors = new List<SourceTensor>();
        foreach (var t in file.Tensors)
        {
            // Every tensor must be one llama tensor, named once: an unknown name (a Hugging Face name, lm_head, a
            // fake-quantizer scale) or a second spelling of a known one (blk.00) would otherwise land on a real
            // tensor's key or be read for what it is not. llama.cpp refuses them too.
            string name = HfName(t.Name) ?? throw new CheckpointException(file.Path, t.Name,
                "is not a tensor of a llama GGUF (token_embd, output_norm, output and blk.N.attn_*/ffn_*.weight)");
            if (t.Dims.Length > 2)
                throw new CheckpointException(file.Path, t.Name, $"has {t.Dims.Length} dimensions; llama " +
                    $"tensors have 1 or 2");
            if (_byName.TryGetValue(name, out var earlier))
                throw new CheckpointException(file.Path, t.Name, $"is {name}, as {earlier.Gguf.Name} already is");
            long[] shape = t.Dims.Length == 1 ? [t.Cols] : [t.Rows, t.Cols];
            var dtype = t.Type switch { GgmlType.F16 => SourceDType.F16, GgmlType.BF16 => SourceDType.BF16, _
                => SourceDType.F32 };
            var source = new SourceTensor(name, dtype, shape, file.Path, t.Offset, t.Bytes,
                GgmlTypes.IsFloat(t.Type) ? null : t.Type);
            bool rope = name.EndsWith(".self_attn.q_proj.weight", StringComparison.Ordinal)
                || name.EndsWith(".self_attn.k_proj.weight", StringComparison.Ordinal);
            _byName[name] = (source, t, rope ? config.HeadDim : 0);
            tensors.Add(source);
        }
        Tensors = tensors;
    }

    /// <summary>Opens a GGUF file and reads its llama hyperparameters; the tensors are read later, on demand.</summary>
    public static GgufCheckpoint Open(string path)
    {
        var file = GgufFile.Open(path);
        try
        {
            return new GgufCheckpoint(file, ReadConfig(file));
        }
        catch
        {
            file.Dispose();
            throw;
        }
    }

    private static string? HfName(string gguf)
    {
        switch (gguf)
        {
            case "token_embd.weight": return "model.embed_tokens.weight";
            case "output_norm.weight": return "model.norm.weight";
            case "output.weight": return "lm_head.weight";
        }
        var parts = gguf.Split('.');
        if (parts is ["blk", var layer, var kind, "weight"] && int.TryParse(layer, NumberStyles.None,
                CultureInfo.InvariantCulture, out int n) && n.ToString(CultureInfo.InvariantCulture) == layer
            && LayerNames.TryGetValue(kind, out var hf))
            return $"model.layers.{n}.{hf}.weight";
        return null;
    }

    private static ModelConfig ReadConfig(GgufFile f)
    {
        CheckpointException Error(string problem) => new(f.Path, null, problem);
        string architecture = Get<string>(f, "general.architecture") ?? throw Error("has no general.architecture");
        if (architecture != "llama")
            throw Error($"has architecture '{architecture}', which is not imported (llama is: LLaMA and " +
                $"MobileLLM-shaped models)");
        foreach (string key in f.Metadata.Keys)
            if (key.StartsWith("llama.", StringComparison.Ordinal) && !LlamaKeys.Contains(key["llama.".Length..]))
                throw Error($"has metadata {key}, which this importer does not understand");

        int Required(string key) => Int(f, key) ?? throw Error($"has no {key}");
        int dim = Required("llama.embedding_length"), layers = Required("llama.block_count"),
            hidden = Required("llama.feed_forward_length"), heads = Required("llama.attention.head_count");
        // Checked before anything is sized by it (the per-layer arrays below).
        if (layers > ModelConfig.MaxLayers)
            throw Error($"has llama.block_count {layers}, more than the {ModelConfig.MaxLayers} layers a model may have");
        int kvHeads = Int(f, "llama.attention.head_count_kv") ?? heads;
        if (heads < 1 || dim % heads != 0 || kvHeads < 1 || heads % kvHeads != 0)
            throw Error($"has {heads} heads and {kvHeads} KV heads for embedding length {dim}");
        int headDim = Int(f, "llama.attention.key_length") ?? dim / heads;
        foreach (string key in new[] { "llama.attention.value_length", "llama.rope.dimension_count" })
            if (Int(f, key) is { } v && v != headDim)
                throw Error($"has {key} {v}, not the head dimension {headDim} (partial RoPE and unequal key/value " +
                    $"widths are not llama)");
        if ((Int(f, "llama.expert_count") ?? 0) != 0)
            throw Error("is a mixture-of-experts llama model, which is not imported");
        string scaling = Get<string>(f, "llama.rope.scaling.type") ?? "none";
        double factor = Positive(f, "llama.rope.scaling.factor") ?? 1;
        if (!(scaling is "none" || scaling == "linear" && factor == 1))
            throw Error($"has RoPE scaling '{scaling}' (factor {factor}), which is not imported");
        var tokens = Get<string[]>(f, "tokenizer.ggml.tokens") ?? throw Error("has no tokenizer.ggml.tokens (the " +
            "vocabulary)");
        if (Int(f, "llama.vocab_size") is { } vocab && vocab != tokens.Length)
            throw Error($"has llama.vocab_size {vocab} but {tokens.Length} tokens");

        var config = new ModelConfig
        {
            Architecture = "mobilellm", VocabSize = tokens.Length, HiddenSize = dim, IntermediateSize = hidden,
            NumLayers = layers, NumHeads = heads, NumKvHeads = kvHeads, HeadDim = headDim,
            MaxPositionEmbeddings = Int(f, "llama.context_length") ?? 2048,
            RmsNormEps = (float)(Positive(f, "llama.attention.layer_norm_rms_epsilon")
                ?? throw Error("has no llama.attention.layer_norm_rms_epsilon")),
            RopeTheta = (float)(Positive(f, "llama.rope.freq_base") ?? 10000),
            RopeLayout = RopeLayout.RotateHalf,
            TieWordEmbeddings = !f.Tensors.Any(t => t.Name == "output.weight"), LayerRepeat = 1,
            LayerTypes = [.. Enumerable.Repeat(AttentionKind.Global, layers)],
            RopeLayers = [.. Enumerable.Repeat(true, layers)],
        };
        // The .pq loader's own checks (ranges, divisibility), so a bad GGUF fails here and not after conversion.
        using var json = System.Text.Json.JsonDocument.Parse(config.ToJson());
        return ModelConfig.Parse(json.RootElement, f.Path);
    }

    // One typed reader per metadata kind, and no generic `value is T` over a Nullable<T>: NativeAOT (ILC, .NET 10)
    // compiled `value is T t` with T = bool? into a branch to itself, so every GGUF carrying a bool key hung the
    // native converter (issue 36, G1). tests/ParetoQ.AotCheck keeps that pattern compiled natively in CI.
    private static T? Get<T>(GgufFile f, string key) where T : class
    {
        if (!f.Metadata.TryGetValue(key, out var value)) return null;
        return value as T ?? throw WrongType(f, key, value);
    }

    private static double? Double(GgufFile f, string key)
    {
        if (!f.Metadata.TryGetValue(key, out var value)) return null;
        return value is double d ? d : throw WrongType(f, key, value);
    }

    private static bool? Bool(GgufFile f, string key)
    {
        if (!f.Metadata.TryGetValue(key, out var value)) return null;
        return value is bool b ? b : throw WrongType(f, key, value);
    }

    private static CheckpointException WrongType(GgufFile f, string key, object value) =>
        new(f.Path, null, $"has metadata {key} of the wrong type ({GgufFile.GgufTypeName(value)})");

    private static int? Int(GgufFile f, string key)
    {
        if (!f.Metadata.TryGetValue(key, out var value)) return null;
        if (value is Array)
            throw new CheckpointException(f.Path, null, $"has metadata {key} as an array (one value per layer), " +
                $"which is not imported");
        if (value is not long v || v < 0 || v > int.MaxValue)
            throw new CheckpointException(f.Path, null, $"has metadata {key} = {value}, not a count");
        return (int)v;
    }

    // A float hyperparameter that must be positive and finite: NaN would otherwise reach the config's JSON writer,
    // whose own error names no key.
    private static double? Positive(GgufFile f, string key)
    {
        if (Double(f, key) is not { } v) return null;
        if (!double.IsFinite(v) || v <= 0 || v > float.MaxValue)
            throw new CheckpointException(f.Path, null, $"has metadata {key} = {v}, not a positive finite number");
        return v;
    }

    public bool TryGet(string name, out SourceTensor tensor)
    {
        bool found = _byName.TryGetValue(name, out var entry);
        tensor = entry.Tensor;
        return found;
    }

    public void Read(SourceTensor tensor, long start, Span<float> destination)
    {
        if (!_byName.TryGetValue(tensor.Name, out var entry) || !ReferenceEquals(entry.Tensor, tensor))
            throw new ArgumentException($"tensor '{tensor.Name}' does not belong to {_file.Path}", nameof(tensor));
        var t = entry.Gguf;
        SourceTensorReader.CheckRange(tensor, start, destination.Length);
        int cols = checked((int)t.Cols);
        var bytes = new byte[t.RowBytes];
        var row = new float[cols];
        for (int done = 0; done < destination.Length;)
        {
            long r = (start + done) / cols;
            int from = (int)((start + done) % cols), n = Math.Min(cols - from, destination.Length - done);
            _file.ReadBytes(t, GgufRow(r, entry.PermuteHeadDim) * t.RowBytes, bytes);
            GgmlTypes.Dequantize(t.Type, bytes, row);
            row.AsSpan(from, n).CopyTo(destination.Slice(done, n));
            SourceTensorReader.CheckFinite(_file.Path, tensor, start + done, destination.Slice(done, n));
            done += n;
        }
    }

    /// <summary>
    /// The GGUF row holding Hugging Face row <paramref name="row"/>: within each head, rotate-half's pair (j, j + d/2)
    /// is llama.cpp's adjacent pair (2j, 2j + 1). The inverse of the exporter's permutation.
    /// </summary>
    private static long GgufRow(long row, int headDim)
    {
        if (headDim == 0) return row;
        long head = row / headDim;
        int j = (int)(row % headDim), half = headDim / 2;
        return head * headDim + (j < half ? 2 * j : 2 * (j - half) + 1);
    }

    public void Dispose() => _file.Dispose();

    /// <summary>The converter's view: config and the tokenizer from the GGUF metadata, as a SentencePiece
    /// model.</summary>
    public (HfConfig Config, HfTokenizer Tokenizer) Describe()
    {
        var f = _file;
        TokenizerException Error(string problem) => new(f.Path, problem);
        string kind = Get<string>(f, "tokenizer.ggml.model") ?? throw Error("has no tokenizer.ggml.model");
        if (kind != "llama")
            throw Error($"has tokenizer model '{kind}', which is not imported (llama, SentencePiece BPE, is)");
        if (Bool(f, "tokenizer.ggml.add_space_prefix") == false)
            throw Error("has add_space_prefix false, which the SentencePiece tokenizer does not implement");
        var tokens = Get<string[]>(f, "tokenizer.ggml.tokens")!;
        var scores = Get<double[]>(f, "tokenizer.ggml.scores");
        var types = Get<long[]>(f, "tokenizer.ggml.token_type");
        if (scores is not null && scores.Length != tokens.Length || types is not null && types.Length != tokens.Length)
            throw Error($"has {tokens.Length} tokens but {scores?.Length} scores and {types?.Length} token types");
        var pieces = new List<SentencePiece>(tokens.Length);
        for (int i = 0; i < tokens.Length; i++)
        {
            long type = types?[i] ?? (long)PieceType.Normal;
            if (type is < 1 or > 6) throw Error($"token {i} has type {type} (1 to 6)");
            float score = (float)(scores?[i] ?? 0);
            if (!float.IsFinite(score)) throw Error($"token {i} has score {scores![i]}");
            if (tokens[i].Length == 0) throw Error($"token {i} is empty");
            pieces.Add(new SentencePiece(tokens[i], score, (PieceType)type));
        }

        int? Id(string key)
        {
            if (!f.Metadata.TryGetValue(key, out var raw) || raw is long none && none == uint.MaxValue) return null;
            int id = Int(f, key)!.Value; // u32 max is llama.cpp's "none"
            if (id >= tokens.Length) throw Error($"{key} {id} is outside the vocabulary of {tokens.Length}");
            return id;
        }
        int? bos = Id("tokenizer.ggml.bos_token_id"), eos = Id("tokenizer.ggml.eos_token_id"),
            pad = Id("tokenizer.ggml.padding_token_id");
        bool addBos = Bool(f, "tokenizer.ggml.add_bos_token") ?? true;
        if (Bool(f, "tokenizer.ggml.add_eos_token") == true)
            throw Error("has add_eos_token true, which generation does not implement");
        int bosId = addBos && bos is { } b ? b : PqTokenizerInfo.None;
        int[] stops = eos is { } e ? [e] : [];
        string? template = Get<string>(f, "tokenizer.chat_template");
        if (template?.Length > PqFile.MaxChatTemplateChars)
            throw Error($"has a tokenizer.chat_template of {template.Length} characters, more than the " +
                $"{PqFile.MaxChatTemplateChars} a .pq file holds");
        var info = new PqTokenizerInfo(TokenizerKinds.SentencePiece, bosId, stops, pad ?? PqTokenizerInfo.None,
            new Dictionary<string, int>(), template);
        var notes = new List<string> { $"GGUF version {f.Version}, {f.Tensors.Count} tensors" };
        var hf = new HfConfig(SourceFamily.Gguf, Config, null, bosId == PqTokenizerInfo.None ? null : bosId, stops,
            pad, notes);
        byte[] model = SentencePieceModelWriter.Write(pieces);
        // Loaded here as the written file's reader will load it: a vocabulary it would refuse (a duplicate piece, a
        // piece over 256 bytes, two pieces that read as the same text) is refused now, not written.
        _ = Tokenizers.Create(info, model, Config.VocabSize, f.Path);
        var tokenizer = new HfTokenizer(info, model,
            $"GGUF vocabulary as a SentencePiece model, {pieces.Count} pieces, BOS {(addBos ? bos : "off")}, " +
            $"EOS {(eos?.ToString(CultureInfo.InvariantCulture) ?? "none")}", []);
        return (hf, tokenizer);
    }
}
