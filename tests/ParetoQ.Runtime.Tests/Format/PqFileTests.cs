using ParetoQ.Runtime.Text;
using System.Buffers.Binary;
using System.Text.RegularExpressions;
using ParetoQ.Runtime.Format;
using ParetoQ.Runtime.Model;
using ParetoQ.Runtime.Quantization;
using ParetoQ.TestModels;

namespace ParetoQ.Runtime.Tests;

public sealed class PqFileTests : IDisposable
{
    private readonly TempDir _dir = new();
    private readonly GeneratedModel _model;
    private readonly byte[] _bytes;

    public PqFileTests()
    {
        _model = TestModelGenerator.Write(_dir.File("valid.pq"), TestModelGenerator.MobileLlm(), WeightFormat.Q2Seq,
            WeightFormat.I8Row, seed: 1);
        _bytes = File.ReadAllBytes(_model.Path);
    }

    public void Dispose() => _dir.Dispose();

    [Fact]
    public unsafe void Round_trip_keeps_everything_and_maps_tensors_in_place()
    {
        using var f = PqFile.Open(_model.Path);
        Assert.Equal("mobilellm", f.Config.GetProperty("architecture").GetString());
        Assert.Equal(TokenizerKinds.Tiktoken, f.Tokenizer.Kind);
        Assert.Equal(256, f.Tokenizer.BosId);
        Assert.Equal([257], f.Tokenizer.EosIds);
        Assert.Equal(256, f.Tokenizer.SpecialTokens["<|begin_of_text|>"]);
        Assert.Equal(ByteLevelVocabulary.Ranks(), f.TokenizerBytes.ToArray());
        Assert.Equal("2", f.Provenance.Bits);
        Assert.Equal("q2_seq", f.Provenance.Settings["projections"]);
        Assert.Equal(1 + 1 + 3 * 9, f.Tensors.Count);

        var q = f["model.layers.1.self_attn.q_proj.weight"];
        Assert.Equal(WeightFormat.Q2Seq, q.Format);
        Assert.Equal([72, 72], q.Shape);
        Assert.Equal(0, (long)q.Pointer % 64);
        // Zero-copy: the view is the file's bytes at DataOffset + Offset.
        Assert.Equal(_bytes.AsSpan((int)(f.DataOffset + q.Offset), (int)q.Length).ToArray(), q.Data.ToArray());
        Assert.Equal(_model.DenseWeights["model.norm.weight"], f["model.norm.weight"].AsFloats().ToArray());
    }

    [Fact]
    public void Model_opens_through_a_chain_of_symbolic_links()
    {
        string relative = _dir.File("relative-link.pq"), absolute = _dir.File("absolute-link.pq");
        File.CreateSymbolicLink(relative, "valid.pq");
        File.CreateSymbolicLink(absolute, relative);
        using var f = PqFile.Open(absolute);
        Assert.Equal(_bytes.Length, f.FileLength);
        Assert.Equal(1 + 1 + 3 * 9, f.Tensors.Count);
    }

    [Fact]
    public void Writer_refuses_to_overwrite_and_leaves_no_temporary_files()
    {
        var writer = new PqWriter(TestModelGenerator.MobileLlm().ToJson(),
            new PqProvenance("s", "2", "t", new Dictionary<string, string>()));
        writer.SetTokenizer(ByteLevelVocabulary.Info(chatTokens: false), ByteLevelVocabulary.Ranks());
        var e = Assert.Throws<OutputExistsException>(() => writer.Write(_model.Path));
        Assert.Contains("already exists", e.Message);
        Assert.Equal(_bytes, File.ReadAllBytes(_model.Path));
        Assert.Single(Directory.GetFiles(_dir.Path));
    }

    [Fact]
    public void Missing_file_or_directory_is_a_format_error_naming_the_path()
    {
        string missing = _dir.File("nope.pq");
        Assert.Equal(missing + ": does not exist",
            Assert.Throws<PqFormatException>(() => PqFile.Open(missing)).Message);
        Assert.Equal(_dir.Path + ": is a directory, not a file",
            Assert.Throws<PqFormatException>(() => PqFile.Open(_dir.Path)).Message);
    }

    [Fact]
    public void Writer_refuses_inconsistent_tensors()
    {
        var writer = new PqWriter(TestModelGenerator.MobileLlm().ToJson(),
            new PqProvenance("s", "2", "t", new Dictionary<string, string>()));
        Assert.Contains("needs 288",
            Assert.Throws<ArgumentException>(()
            => writer.AddTensor("n", WeightFormat.F32, [72], new byte[100])).Message);
        Assert.Contains("not valid for q2_seq",
            Assert.Throws<ArgumentException>(()
            => writer.AddTensor("p", WeightFormat.Q2Seq, [72], new byte[100])).Message);
        writer.AddFloatTensor("n", WeightFormat.F32, [2], [1f, 2f]);
        Assert.Contains("added twice",
            Assert.Throws<ArgumentException>(()
            => writer.AddFloatTensor("n", WeightFormat.F32, [2], [1f, 2f])).Message);
        Assert.Contains("needs a tokenizer",
            Assert.Throws<InvalidOperationException>(() => writer.Write(_dir.File("x.pq"))).Message);
        var bad = new QuantizedMatrix(WeightFormat.Ternary, 1, 4, 4, [0, 1, 3, 2], [1f]);
        Assert.Contains("code 3 out of range for ternary",
            Assert.Throws<ArgumentException>(() => WeightPacker.Pack(bad)).Message);
    }

    [Fact]
    public void Disposed_file_refuses_access()
    {
        var f = PqFile.Open(_model.Path);
        var t = f.Tensors[0];
        f.Dispose();
        Assert.Throws<ObjectDisposedException>(() => t.Data.Length);
    }

    public static TheoryData<string, string> Corruptions() => new()
    {
        { "bad magic", "bad magic" },
        { "version 2", "unsupported format version 2" },
        { "empty file", "is empty, or not a regular file" },
        { "short file", "shorter than the 64-byte header" },
        { "truncated in metadata", "runs past the end" },
        { "truncated in data", "does not end at the file's end" },
        { "trailing bytes", "does not end at the file's end" },
        { "absurd metadata length", "metadata length" },
        { "header checksum", "header checksum mismatch" },
        { "metadata checksum", "metadata checksum mismatch" },
        { "tensor checksum", "tensor 'model.norm.weight': checksum mismatch" },
        { "offset past end", "tensor 'model.norm.weight': field 'offset' = 1099511627776 must be an integer in [0, " },
        { "length past end", "tensor 'model.norm.weight': bytes [" },
        { "misaligned offset", "tensor 'model.norm.weight': offset" },
        { "overlap", "overlaps" },
        { "shape/length mismatch", "tensor 'model.norm.weight': length 288 does not match f32 [73]" },
        { "unknown format", "tensor 'model.norm.weight': unknown format 'q7'" },
        { "packed 1-D shape",
            "tensor 'model.layers.0.self_attn.q_proj.weight': shape [5184] is not valid for format q2_seq" },
        { "duplicate tensor", "appears twice in the tensor table" },
        { "unknown field", "unknown field 'compression'" },
        { "not JSON", "metadata is not valid JSON" },
        { "invalid UTF-8", "metadata is not valid UTF-8" },
        { "unknown tokenizer", "unknown tokenizer kind 'wordpiece'" },
        { "huge shape", "must be an integer in [1, 2147483647]" },
        { "overflowing packed shape",
            "tensor 'model.layers.0.self_attn.q_proj.weight': shape [4, 536870928] is not valid for format q2_seq" },
        { "negative scale", "tensor 'model.layers.0.self_attn.q_proj.weight': scale #0 is -2" },
    };

    [Theory]
    [MemberData(nameof(Corruptions))]
    public void Each_corruption_is_refused_with_a_message_naming_file_tensor_and_problem(string corruption,
        string expected)
    {
        byte[] bad = Corrupt(corruption);
        string path = _dir.File("bad.pq");
        File.WriteAllBytes(path, bad);
        foreach (var memory in new[] { WeightMemory.Mapped, WeightMemory.Resident })
        {
            var e = Assert.Throws<PqFormatException>(() => PqFile.Open(path, memory: memory).Dispose());
            Assert.StartsWith(path + ":", e.Message);
            Assert.Contains(expected, e.Message);
        }
    }

    [Fact]
    public void Resident_file_holds_the_same_bytes_and_gives_the_same_logits_as_the_mapped_one()
    {
        using (var mapped = PqFile.Open(_model.Path, memory: WeightMemory.Mapped))
        using (var resident = PqFile.Open(_model.Path, memory: WeightMemory.Resident))
        {
            Assert.Equal((WeightMemory.Mapped, WeightMemory.Resident), (mapped.Memory, resident.Memory));
            Assert.Equal(mapped.TokenizerBytes.ToArray(), resident.TokenizerBytes.ToArray());
            foreach (var t in mapped.Tensors) Assert.True(t.Data.SequenceEqual(resident[t.Name].Data), t.Name);
        }
        // Small files stay mapped by default: the TLB reach of 4 KiB pages covers them.
        using (var auto = PqFile.Open(_model.Path, memory: WeightMemory.Auto))
            Assert.Equal(WeightMemory.Mapped, auto.Memory);
        Assert.Equal(WeightMemory.Mapped, ResidentMemory.Resolve(WeightMemory.Auto, ResidentMemory.AutoMinBytes - 1));
        Assert.Equal(ResidentMemory.TransparentHugePages ? WeightMemory.Resident : WeightMemory.Mapped,
            ResidentMemory.Resolve(WeightMemory.Auto, ResidentMemory.AutoMinBytes));

        float[] Logits(WeightMemory memory)
        {
            using var model = LanguageModel.Load(_model.Path, new Backends.Cpu.CpuBackendOptions { Threads = 1 },
                memory);
            using var session = new Session(model);
            return session.Forward([1, 2, 3]).ToArray();
        }
        Assert.Equal(Logits(WeightMemory.Mapped), Logits(WeightMemory.Resident));

        var file = PqFile.Open(_model.Path, memory: WeightMemory.Resident);
        file.Dispose();
        Assert.Throws<ObjectDisposedException>(() => file.TokenizerBytes.Length);
    }

    private byte[] Corrupt(string corruption)
    {
        string normEntry = "\"name\": \"model.norm.weight\"";
        return corruption switch
        {
            "bad magic" => Patch(_bytes, 0, 0x51),
            "version 2" => Reseal(h => BinaryPrimitives.WriteUInt32LittleEndian(h.AsSpan(8), 2)),
            "empty file" => [],
            "short file" => _bytes[..40],
            "truncated in metadata" => _bytes[..200],
            "truncated in data" => _bytes[..^1],
            "trailing bytes" => [.. _bytes, 0],
            "absurd metadata length" => Reseal(h => BinaryPrimitives.WriteUInt64LittleEndian(h.AsSpan(16), 1UL << 40)),
            "header checksum" => Patch(_bytes, 33, 0x01),
            "metadata checksum" => Patch(_bytes, 100, (byte)(_bytes[100] ^ 0x20)),
            "tensor checksum" => PatchTensor("model.norm.weight"),
            "offset past end" => EditTensorField("model.norm.weight", "offset", _ => "1099511627776"),
            "length past end" => EditTensorField("model.norm.weight", "offset", _ => (DataLength() - 64).ToString()),
            "misaligned offset" => EditTensorField("model.norm.weight", "offset", o => (long.Parse(o) + 4).ToString()),
            "overlap"
                => EditTensorField("model.norm.weight", "offset", _
                => TensorOffset("model.layers.2.mlp.down_proj.weight").ToString()),
            "shape/length mismatch" => EditTensorField("model.norm.weight", "shape", _ => "[73]"),
            "unknown format" => EditTensorField("model.norm.weight", "format", _ => "\"q7\""),
            "packed 1-D shape" => EditTensorField("model.layers.0.self_attn.q_proj.weight", "shape", _ => "[5184]"),
            "duplicate tensor"
                => PqBytes.WithMetadata(_bytes, m
                => m.Replace("\"name\": \"model.layers.0.mlp.up_proj.weight\"", normEntry)),
            "unknown field"
                => PqBytes.WithMetadata(_bytes, m
                => m.Replace("\"tensors\":", "\"compression\": \"zstd\",\n  \"tensors\":")),
            "not JSON" => PqBytes.WithMetadata(_bytes, m => m[..^3]),
            "invalid UTF-8" => InvalidUtf8InMetadata(),
            "unknown tokenizer"
                => PqBytes.WithMetadata(_bytes, m => m.Replace("\"kind\": \"tiktoken\"", "\"kind\": \"wordpiece\"")),
            "overflowing packed shape"
                => EditTensorField("model.layers.0.self_attn.q_proj.weight", "shape", _ => "[4, 536870928]"),
            "negative scale" => NegativeScale(),
            "huge shape" => EditTensorField("model.norm.weight", "shape", _ => "[72, 99999999999]"),
            _ => throw new ArgumentException(corruption),
        };
    }

    // A 0xFF byte inside a JSON string: valid checksums, so only the UTF-8 check can catch it.
    private byte[] InvalidUtf8InMetadata()
    {
        var (meta, data) = PqBytes.Split(_bytes);
        byte[] bytes = System.Text.Encoding.UTF8.GetBytes(meta);
        int at = meta.IndexOf("\"name\": \"", StringComparison.Ordinal) + 9;
        bytes[at] = 0xFF;
        return PqBytes.Build(bytes, data);
    }

    private byte[] Reseal(Action<byte[]> edit)
    {
        var (meta, data) = PqBytes.Split(_bytes);
        return PqBytes.Build(meta, data, edit);
    }

    private static byte[] Patch(byte[] src, int at, byte value)
    {
        var b = (byte[])src.Clone();
        b[at] = value;
        return b;
    }

    private long TensorOffset(string name)
    {
        using var f = PqFile.Open(_model.Path);
        return f[name].Offset;
    }

    // Writes −2 over the first scale of a packed tensor and fixes its checksum, so only the scale check can catch it.
    private byte[] NegativeScale()
    {
        using var f = PqFile.Open(_model.Path);
        var t = f["model.layers.0.self_attn.q_proj.weight"];
        var layout = new PackedLayout(t.Format, t.Shape[0], t.Shape[1]);
        var data = t.Data.ToArray();
        BinaryPrimitives.WriteSingleLittleEndian(data.AsSpan((int)layout.CodeBytes), -2f);
        var patched = (byte[])_bytes.Clone();
        data.CopyTo(patched, f.DataOffset + t.Offset);
        string oldHash = t.Checksum.ToString("x16"),
            newHash = System.IO.Hashing.XxHash3.HashToUInt64(data).ToString("x16");
        return PqBytes.WithMetadata(patched, m => m.Replace(oldHash, newHash));
    }

    private long DataLength()
    {
        using var f = PqFile.Open(_model.Path);
        return f.FileLength - f.DataOffset;
    }

    private byte[] PatchTensor(string name)
    {
        using var f = PqFile.Open(_model.Path);
        int at = (int)(f.DataOffset + f[name].Offset + 5);
        return Patch(_bytes, at, (byte)(_bytes[at] ^ 0x40));
    }

    // Replaces one field's JSON value inside the named tensor's entry and reseals the file.
    private byte[] EditTensorField(string tensor, string field, Func<string, string> newValue) =>
        PqBytes.WithMetadata(_bytes, meta =>
        {
            int start = meta.IndexOf($"\"name\": \"{tensor}\"", StringComparison.Ordinal);
            int end = meta.IndexOf('}', start);
            var entry = meta[start..end];
            var edited = Regex.Replace(entry, $"(\"{field}\": )(\\[[^\\]]*\\]|\"[^\"]*\"|\\d+)", m
                => m.Groups[1].Value + newValue(m.Groups[2].Value));
            return meta[..start] + edited + meta[end..];
        });

    [Fact]
    public void Model_loader_names_the_tensor_whose_shape_disagrees_with_the_config()
    {
        var edited = PqBytes.WithMetadata(_bytes, m => m.Replace("\"hidden_size\": 72", "\"hidden_size\": 76"));
        string path = _dir.File("shape.pq");
        File.WriteAllBytes(path, edited);
        var e = Assert.Throws<PqFormatException>(() => LanguageModel.Load(path).Dispose());
        Assert.Contains("tensor 'model.embed_tokens.weight': shape [301, 72] does not match the config, which needs [301, 76]", e.Message);
    }

    [Fact]
    public void Unused_tensors_are_refused()
    {
        var twoLayers = TestModelGenerator.MobileLlm();
        twoLayers = new ModelConfig
        {
            Architecture = twoLayers.Architecture, VocabSize = twoLayers.VocabSize, HiddenSize = twoLayers.HiddenSize,
            IntermediateSize = twoLayers.IntermediateSize, NumLayers = 2, NumHeads = twoLayers.NumHeads,
                NumKvHeads = twoLayers.NumKvHeads,
            HeadDim = twoLayers.HeadDim, MaxPositionEmbeddings = twoLayers.MaxPositionEmbeddings,
                RmsNormEps = twoLayers.RmsNormEps,
            RopeTheta = twoLayers.RopeTheta, RopeLayout = twoLayers.RopeLayout, TieWordEmbeddings = true,
            LayerTypes = [AttentionKind.Global, AttentionKind.Global], RopeLayers = [true, true],
        };
        var edited = PqBytes.WithMetadata(_bytes, m =>
        {
            int start = m.IndexOf("\"config\": ", StringComparison.Ordinal) + "\"config\": ".Length;
            int end = m.IndexOf(",\n  \"provenance\"", StringComparison.Ordinal);
            return m[..start] + System.Text.Encoding.UTF8.GetString(twoLayers.ToJson()) + m[end..];
        });
        string path = _dir.File("unused.pq");
        File.WriteAllBytes(path, edited);
        var e = Assert.Throws<PqFormatException>(() => LanguageModel.Load(path).Dispose());
        Assert.Contains("tensor 'model.layers.2.", e.Message);
        Assert.Contains("is not used", e.Message);
    }
}
