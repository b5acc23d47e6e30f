using System.Buffers.Binary;
using System.Text;
using Microsoft.Win32.SafeHandles;
using ParetoQ.Runtime.Conversion;
using ParetoQ.Runtime.Format;
using ParetoQ.Runtime.Model;
using ParetoQ.Runtime.Text;

namespace ParetoQ.Runtime.Interchange;

/// <summary>
/// A llama2.c checkpoint (<c>run.c</c>'s formats), read in place and presented under Hugging Face tensor names so the
/// one converter handles it:
/// <list type="bullet">
/// <item>legacy v0: 7 int32 (dim, hidden_dim, n_layers, n_heads, n_kv_heads, vocab_size, seq_len; a negative
/// vocab_size means an untied head), then fp32 arrays grouped by kind across layers (embedding, attention norms, wq,
/// wk, wv, wo, FFN norms, w1, w2, w3, final norm), two RoPE tables (skipped), and the head when untied;</item>
/// <item>v1 (magic 0x616b3432, "ak42" read as a little-endian uint32; version 1): a 256-byte header with the same
/// sizes and a shared-classifier flag, then the
/// arrays in export.py's order (embedding, attention norms, FFN norms, final norm, wq, wk, wv, wo, w1, w2, w3,
/// head);</item>
/// <item>v2 (version 2): the same header plus the group size at byte 37; the norms in fp32, then embedding, wq … w3
/// and head each as int8 values followed by one fp32 scale per group (export.py's Q8_0).</item>
/// </list>
/// Every matrix is PyTorch's [out, in] row-major, as in a Hugging Face checkpoint; RoPE rotates adjacent pairs
/// (<see cref="RopeLayout.Interleaved"/>). The file's size must be exactly what the header implies.
/// </summary>
public sealed class Llama2cCheckpoint : ISourceCheckpoint
{
    private const uint VersionedMagic = 0x616b3432; // "ak42", little-endian
    private const int MaxDimension = 1 << 16;
    private readonly SafeFileHandle _handle;
    private readonly Dictionary<string, SourceTensor> _byName;

    public string Directory { get; }
    public string Path { get; }
    public IReadOnlyList<string> Files => [Path];
    public IReadOnlyList<SourceTensor> Tensors { get; }
    /// <summary>The model the header describes (fp32 weights; vocabulary and context from the header).</summary>
    public ModelConfig Config { get; }
    /// <summary>"v0", "v1" or "v2".</summary>
    public string FormatVersion { get; }
    /// <summary>Values per fp32 scale of a version 2 checkpoint's int8 matrices; 0 for fp32 checkpoints.</summary>
    public int GroupSize { get; }

    private Llama2cCheckpoint(string path, SafeFileHandle handle, ModelConfig config, string version, int groupSize,
        List<SourceTensor> tensors)
    {
        Path = path;
        Directory = System.IO.Path.GetDirectoryName(System.IO.Path.GetFullPath(path))!;
        _handle = handle;
        Config = config;
        FormatVersion = version;
        GroupSize = groupSize;
        Tensors = tensors;
        _byName = tensors.ToDictionary(t => t.Name, StringComparer.Ordinal);
    }

    public static Llama2cCheckpoint Open(string path) => SourceTensorReader.OpenFile(path, handle =>
    {
        CheckpointException Error(string problem) => new(path, null, problem);
        long length = RandomAccess.GetLength(handle);
        var header = new byte[256];
        if (length < 28) throw Error($"is {length} bytes, shorter than a llama2.c header");
        RandomAccess.Read(handle, header.AsSpan(0, (int)Math.Min(256, length)), 0);
        bool versioned = BinaryPrimitives.ReadUInt32LittleEndian(header) == VersionedMagic;
        int version = versioned ? BinaryPrimitives.ReadInt32LittleEndian(header.AsSpan(4)) : 0;
        if (versioned && version is not (1 or 2))
            throw Error($"has llama2.c format version {version} (versions 0, 1 and 2 are read)");
        if (versioned && length < 256) throw Error($"is {length} bytes, shorter than a version {version} header");
        // Version 2 stores each matrix as int8 with one fp32 scale per group of this many values (export.py's Q8_0).
        int groupSize = version == 2 ? BinaryPrimitives.ReadInt32LittleEndian(header.AsSpan(37)) : 0;
        if (version == 2 && groupSize is < 1 or > 1 << 16) throw Error($"has group size {groupSize} (1 to 65536)");
        var h = header.AsSpan(versioned ? 8 : 0);
        int dim = Read(h, 0), hidden = Read(h, 1), layers = Read(h, 2), heads = Read(h, 3), kvHeads = Read(h, 4),
            vocabField = Read(h, 5), seqLen = Read(h, 6);
        bool tied = versioned ? header[36] != 0 : vocabField > 0;
        int vocab = Math.Abs(vocabField == int.MinValue ? 0 : vocabField);
        foreach (var (name, value, max) in new[] { ("dim", dim, MaxDimension), ("hidden_dim", hidden, 4 * MaxDimension),
            ("n_layers", layers, ModelConfig.MaxLayers), ("n_heads", heads, 1024), ("n_kv_heads", kvHeads, 1024),
            ("vocab_size", vocab, ModelConfig.MaxVocabSize), ("seq_len", seqLen, 1 << 20) })
            if (value < 1 || value > max) throw Error($"header field {name} = {value} is outside 1..{max}");
        if (dim % heads != 0) throw Error($"dim {dim} is not a multiple of n_heads {heads}");
        if (heads % kvHeads != 0) throw Error($"n_heads {heads} is not a multiple of n_kv_heads {kvHeads}");
        int headDim = dim / heads, kvDim = kvHeads * headDim;
        if (headDim % 2 != 0) throw Error($"the head dimension {headDim} is odd; RoPE rotates pairs");

        var config = new ModelConfig
        {
            Architecture = "mobilellm", VocabSize = vocab, HiddenSize = dim, IntermediateSize = hidden,
            NumLayers = layers, NumHeads = heads, NumKvHeads = kvHeads, HeadDim = headDim,
            MaxPositionEmbeddings = seqLen, RmsNormEps = 1e-5f, RopeTheta = 10000,
            RopeLayout = RopeLayout.Interleaved, TieWordEmbeddings = tied, LayerRepeat = 1,
            LayerTypes = [.. Enumerable.Repeat(AttentionKind.Global, layers)],
            RopeLayers = [.. Enumerable.Repeat(true, layers)],
        };

        // The arrays in file order: (name pattern, rows, cols, per layer); "{i}" is the layer index.
        const string L = "model.layers.{i}.";
        (string Name, long Rows, long Cols, bool PerLayer)[] embedding = [("model.embed_tokens.weight", vocab, dim,
            false)];
        (string, long, long, bool)[] attentionNorm = [(L + "input_layernorm.weight", 1, dim, true)];
        (string, long, long, bool)[] ffnNorm = [(L + "post_attention_layernorm.weight", 1, dim, true)];
        (string, long, long, bool)[] finalNorm = [("model.norm.weight", 1, dim, false)];
        (string, long, long, bool)[] projections =
        [
            (L + "self_attn.q_proj.weight", dim, dim, true), (L + "self_attn.k_proj.weight", kvDim, dim, true),
            (L + "self_attn.v_proj.weight", kvDim, dim, true), (L + "self_attn.o_proj.weight", dim, dim, true),
            (L + "mlp.gate_proj.weight", hidden, dim, true), (L + "mlp.down_proj.weight", dim, hidden, true),
            (L + "mlp.up_proj.weight", hidden, dim, true),
        ];
        (string, long, long, bool)[] head = tied ? [] : [("lm_head.weight", vocab, dim, false)];
        var ropeTables = ("", 2L, (long)seqLen * headDim / 2, false); // freq_cis_real and _imag, skipped
        List<(string Name, long Rows, long Cols, bool PerLayer)> order = version switch
        {
            2 => [.. attentionNorm, .. ffnNorm, .. finalNorm, .. embedding, .. projections, .. head],
            1 => [.. embedding, .. attentionNorm, .. ffnNorm, .. finalNorm, .. projections, .. head],
            _ => [.. embedding, .. attentionNorm, .. projections.Take(4), .. ffnNorm, .. projections.Skip(4),
                .. finalNorm, ropeTables, .. head],
        };

        var tensors = new List<SourceTensor>();
        long offset = versioned ? 256 : 28;
        foreach (var (name, rows, cols, perLayer) in order)
        {
            bool grouped = version == 2 && rows > 1; // the norms stay fp32
            if (grouped && rows * cols % groupSize != 0)
                throw Error($"{name.Replace("{i}.", "")}: {rows * cols} values are not whole groups of {groupSize}");
            long bytes = grouped ? rows * cols + rows * cols / groupSize * 4 : rows * cols * 4;
            for (int i = 0; i < (perLayer ? layers : 1); i++)
            {
                if (name.Length > 0)
                {
                    long[] shape = rows == 1 ? [cols] : [rows, cols];
                    string layer = i.ToString(System.Globalization.CultureInfo.InvariantCulture);
                    tensors.Add(new SourceTensor(name.Replace("{i}", layer),
                        SourceDType.F32, shape, path, offset, bytes));
                }
                offset += bytes;
            }
        }
        if (offset != length)
            throw Error($"is {length} bytes, but a {(versioned ? $"version {version}" : "legacy")} checkpoint of this header needs {offset} (truncated, or not llama2.c)");
        return new Llama2cCheckpoint(path, handle, config, $"v{version}", groupSize, tensors);
    });

    private static int Read(ReadOnlySpan<byte> header, int field) =>
        BinaryPrimitives.ReadInt32LittleEndian(header[(4 * field)..]);

    public bool TryGet(string name, out SourceTensor tensor) => _byName.TryGetValue(name, out tensor!);

    public void Read(SourceTensor tensor, long start, Span<float> destination)
    {
        if (tensor.Length == tensor.Elements * 4)
        {
            SourceTensorReader.Read(_handle, Path, tensor, start, destination);
            return;
        }
        // A version 2 matrix: int8 values, then the fp32 scales; each value is q · s in fp32, as runq.c dequantizes.
        SourceTensorReader.CheckRange(tensor, start, destination.Length);
        long firstGroup = start / GroupSize, lastGroup = (start + destination.Length - 1) / GroupSize;
        var q = new byte[destination.Length];
        var scales = new byte[(lastGroup - firstGroup + 1) * 4];
        SourceTensorReader.ReadExactly(_handle, Path, tensor.Name, tensor.Offset + start, q);
        SourceTensorReader.ReadExactly(_handle, Path, tensor.Name, tensor.Offset + tensor.Elements + firstGroup * 4,
            scales);
        for (int i = 0; i < destination.Length; i++)
            destination[i] = (sbyte)q[i] * BinaryPrimitives.ReadSingleLittleEndian(
                scales.AsSpan((int)(((start + i) / GroupSize - firstGroup) * 4)));
        SourceTensorReader.CheckFinite(Path, tensor, start, destination);
    }

    public void Dispose() => _handle.Dispose();

    /// <summary>
    /// llama2.c's <c>tokenizer.bin</c>: the maximum token length (int32), then for each of the model's
    /// <paramref name="vocabSize"/> tokens a float score, an int32 byte length and the bytes. Its export wrote BOS and
    /// EOS as "\n&lt;s&gt;\n" and "\n&lt;/s&gt;\n" and SentencePiece's ▁ as a space; both are undone here, so the
    /// pieces are the SentencePiece vocabulary again (byte fallback pieces "&lt;0xHH&gt;", scores for the merges).
    /// </summary>
    public static List<SentencePiece> ReadTokenizer(string path, int vocabSize)
    {
        TokenizerException Error(string problem) => new(path, problem);
        byte[] bytes = InputFile.ReadAll(path, 64 << 20, Error);
        int at = 0;
        var pieces = new List<SentencePiece>(Math.Min(vocabSize, bytes.Length / 8));
        int NextInt()
        {
            if (bytes.Length - at < 4) throw Error($"ends at byte {at}, inside token {pieces.Count} of {vocabSize}");
            int v = BinaryPrimitives.ReadInt32LittleEndian(bytes.AsSpan(at));
            at += 4;
            return v;
        }
        int maxLength = NextInt();
        if (maxLength is < 1 or > ITokenizer.MaxTokenBytes)
            throw Error($"max_token_length {maxLength} is outside 1..{ITokenizer.MaxTokenBytes}");
        var utf8 = new UTF8Encoding(false, throwOnInvalidBytes: true);
        for (int id = 0; id < vocabSize; id++)
        {
            float score = BitConverter.Int32BitsToSingle(NextInt());
            int length = NextInt();
            if (length < 1 || length > maxLength || length > bytes.Length - at)
                throw Error($"token {id} has length {length} (max_token_length {maxLength}, {bytes.Length - at} bytes left)");
            string text;
            try { text = utf8.GetString(bytes, at, length); }
            catch (DecoderFallbackException) { throw Error($"token {id} is not valid UTF-8"); }
            at += length;
            if (!float.IsFinite(score)) throw Error($"token {id} has score {score}");
            pieces.Add(id switch
            {
                1 when text == "\n<s>\n" => new SentencePiece("<s>", score, PieceType.Control),
                2 when text == "\n</s>\n" => new SentencePiece("</s>", score, PieceType.Control),
                _ when text == "<unk>" => new SentencePiece(text, score, PieceType.Unknown),
                _ when IsBytePiece(text) => new SentencePiece(text, score, PieceType.Byte),
                _ => new SentencePiece(text.Replace(' ', '▁'), score, PieceType.Normal),
            });
        }
        if (at != bytes.Length)
            throw Error($"holds {bytes.Length - at} bytes after the model's {vocabSize} tokens (a tokenizer for another vocabulary?)");
        return pieces;
    }

    private static bool IsBytePiece(string text) => text.Length == 6 && text.StartsWith("<0x", StringComparison.Ordinal)
        && text[5] == '>' && Uri.IsHexDigit(text[3]) && Uri.IsHexDigit(text[4]);

    /// <summary>The converter's view of a llama2.c model: its config and its tokenizer as a SentencePiece
    /// model.</summary>
    public (HfConfig Config, HfTokenizer Tokenizer) Describe(string tokenizerPath)
    {
        var pieces = ReadTokenizer(tokenizerPath, Config.VocabSize);
        // llama2.c's training data starts every story with BOS and has no EOS: a story ends where BOS comes again.
        int bos = pieces.FindIndex(p => p.Piece == "<s>"), eos = pieces.FindIndex(p => p.Piece == "</s>");
        if (bos < 0) throw new TokenizerException(tokenizerPath, "has no <s> piece");
        int[] stops = eos >= 0 ? [eos, bos] : [bos];
        var info = new PqTokenizerInfo(TokenizerKinds.SentencePiece, bos, stops, PqTokenizerInfo.None,
            new Dictionary<string, int>(), null);
        var notes = new List<string>
        {
            $"llama2.c {FormatVersion} checkpoint: generation stops at EOS or at BOS, which begins each training story",
        };
        if (GroupSize > 0)
            notes.Add($"version 2 stores int8 matrices with one fp32 scale per {GroupSize} values; each value is read " +
                "as q·s in fp32, as llama2.c's runq.c dequantizes it");
        var hf = new HfConfig(SourceFamily.Llama2c, Config, null, bos, stops, null, notes);
        byte[] model = SentencePieceModelWriter.Write(pieces);
        // Loaded here as the written file's reader will load it: a vocabulary it would refuse is refused now.
        _ = Tokenizers.Create(info, model, Config.VocabSize, tokenizerPath);
        var tokenizer = new HfTokenizer(info, model,
            $"llama2.c tokenizer.bin as a SentencePiece model, {pieces.Count} pieces, BOS {bos}, " +
            $"stop at [{string.Join(", ", stops)}]", []);
        return (hf, tokenizer);
    }
}
