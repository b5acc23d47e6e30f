using System.Buffers.Binary;
using System.Text;
using ParetoQ.Runtime.Backends;
using ParetoQ.Runtime.Backends.Cpu;
using ParetoQ.Runtime.Conversion;
using ParetoQ.Runtime.Format;
using ParetoQ.Runtime.Generation;
using ParetoQ.Runtime.Interchange;
using ParetoQ.Runtime.Model;
using ParetoQ.Runtime.Quantization;
using ParetoQ.Runtime.Text;
using ParetoQ.TestModels;

namespace ParetoQ.Runtime.Tests;

/// <summary>
/// GGUF → .pq: the real stories260K GGUF runs as its llama2.c original does; .pq → GGUF → .pq gives back every
/// grid exactly; block types no .pq grid holds are kept as exact f32 and said so; hostile headers are refused by name.
/// </summary>
public sealed class GgufImportTests
{
    private static string Stories(string name) => SharedData.Path(Path.Combine("stories260K", name));

    [SharedDataFact]
    public void The_stories260K_gguf_gives_the_logits_of_its_llama2c_original_and_llama2c_greedy_text()
    {
        using var dir = new TempDir();
        var options = new ConversionOptions { Head = WeightFormat.F32 };
        var fromGguf = HfConverter.ConvertGguf(Stories("stories260K.gguf"), dir.File("gguf.pq"), options);
        HfConverter.ConvertLlama2c(Stories("stories260K.bin"), Stories("tok512.bin"), dir.File("bin.pq"), options);
        Assert.All(fromGguf.Tensors, t => Assert.Equal(WeightFormat.F32, t.Format));
        Assert.Contains(fromGguf.Notes, n => n.StartsWith("GGUF F32 -> f32, float to float", StringComparison.Ordinal));

        using var backend = ComputeDevice.Create("cpu", new CpuBackendOptions { Exact = true }, null);
        using var gguf = LanguageModel.Load(dir.File("gguf.pq"), backend);
        using var bin = LanguageModel.Load(dir.File("bin.pq"), backend);
        Assert.Equal(RopeLayout.RotateHalf, gguf.Config.RopeLayout); // q/k rows un-permuted from llama.cpp's pairs
        Assert.Equal(RopeLayout.Interleaved, bin.Config.RopeLayout);
        var tokenizer = Tokenizers.FromFile(gguf.File, gguf.Config.VocabSize);
        var binTokenizer = Tokenizers.FromFile(bin.File, bin.Config.VocabSize);
        string story = File.ReadAllText(Stories("tinystories-sample.txt")).Split("<|endoftext|>")[0].Trim();
        int[] tokens = tokenizer.Encode(story, addBos: true);
        Assert.Equal(tokens, binTokenizer.Encode(story, addBos: true));

        using var a = new Session(gguf, new SessionOptions { ContextLength = 256, KvCache = KvCacheType.F32 });
        using var b = new Session(bin, new SessionOptions { ContextLength = 256, KvCache = KvCacheType.F32 });
        double worst = 0;
        foreach (int t in tokens.Take(100))
        {
            float[] la = a.Forward([t]).ToArray(), lb = b.Forward([t]).ToArray();
            for (int i = 0; i < la.Length; i++) worst = Math.Max(worst, Math.Abs(la[i] - lb[i]));
        }
        // The same weights; only the order RoPE pairs are summed in differs.
        Assert.True(worst < 1e-4, $"logits differ by {worst}");

        // llama2.c's greedy text, with the default kernels and in exact mode.
        foreach (bool exact in new[] { false, true })
        {
            using var kernels = ComputeDevice.Create("cpu", new CpuBackendOptions { Exact = exact }, null);
            using var model = LanguageModel.Load(dir.File("gguf.pq"), kernels);
            using var session = new Session(model, new SessionOptions { ContextLength = 256,
                KvCache = KvCacheType.F32 });
            var text = new StringBuilder();
            new Generator(session, tokenizer).Generate([tokenizer.BosId], new GenerationOptions
            {
                MaxTokens = 200, Sampler = SamplerOptions.Greedy, EosIds = model.File.Tokenizer.EosIds,
            }, piece => text.Append(piece));
            Assert.Equal(File.ReadAllText(Stories("expected-stdout.txt")), text.ToString().TrimStart(' '));
        }

        // PTQ straight from the GGUF: 2-bit round-to-nearest, the error reported.
        var ptq = HfConverter.ConvertGguf(Stories("stories260K.gguf"), dir.File("q2.pq"),
            options with { Bits = BitsChoice.Bits2 });
        Assert.All(ptq.Tensors.Where(t => t.IsProjection), t =>
        {
            Assert.Equal((TensorOrigin.RoundToNearest, WeightFormat.Q2Seq), (t.Origin, t.Format));
            Assert.True(t.MaxError > 0);
        });
        Assert.Contains(ptq.Notes, n => n.StartsWith("GGUF F32 -> q2_seq, requantized: 35 tensor(s), max error",
            StringComparison.Ordinal));
    }

    // Rows of 256 and 512 inputs: whole TQ2_0/Q2_K super-blocks.
    private static ModelConfig Mobilellm256() => new()
    {
        Architecture = "mobilellm", VocabSize = 32000, HiddenSize = 256, IntermediateSize = 512, NumLayers = 2,
        NumHeads = 4, NumKvHeads = 2, HeadDim = 64, MaxPositionEmbeddings = 256, RmsNormEps = 1e-5f,
        RopeTheta = 10000, RopeLayout = RopeLayout.RotateHalf, TieWordEmbeddings = true,
        LayerTypes = [AttentionKind.Global, AttentionKind.Global], RopeLayers = [true, true],
    };

    public static TheoryData<WeightFormat> Grids => new()
    {
        WeightFormat.Binary, WeightFormat.Ternary, WeightFormat.Q2Seq, WeightFormat.Q3Row, WeightFormat.Q4Row,
        WeightFormat.Q4G32,
    };

    [Theory]
    [MemberData(nameof(Grids))]
    public void A_pq_to_gguf_to_pq_round_trip_gives_back_every_grid_bit_for_bit(WeightFormat grid)
    {
        using var dir = new TempDir();
        // Start from a model whose scales GGUF's fp16 can hold: our own export of a snapped checkpoint, imported.
        HfCheckpointWriter.Write(dir.File("hf"), "mobilellm", Mobilellm256(),
            grid == WeightFormat.Q4G32 ? HfWeights.FullPrecision : HfWeights.Snapped,
            grid == WeightFormat.Q4G32 ? default : grid, pytorchBin: false, ConverterTests.LlamaTokenizer(), seed: 3);
        var options = new ConversionOptions
        {
            Bits = grid == WeightFormat.Q4G32 ? BitsChoice.Int4 : BitsChoice.Auto,
            Head = grid == WeightFormat.Q4G32 ? WeightFormat.F16 : WeightFormat.I8Row,
        };
        HfConverter.Convert(dir.File("hf"), dir.File("0.pq"), options);
        GgufExporter.Export(dir.File("0.pq"), dir.File("0.gguf"), overwrite: false);
        var first = HfConverter.ConvertGguf(dir.File("0.gguf"), dir.File("1.pq"),
            options with { Bits = BitsChoice.Auto });
        GgufExporter.Export(dir.File("1.pq"), dir.File("1.gguf"), overwrite: false);
        var second = HfConverter.ConvertGguf(dir.File("1.gguf"), dir.File("2.pq"),
            options with { Bits = BitsChoice.Auto });

        Assert.All(first.Tensors.Where(t => t.IsProjection), t =>
        {
            Assert.Equal(TensorOrigin.Snapped, t.Origin);
            Assert.Equal(grid, t.Format);
        });
        Assert.DoesNotContain(first.Notes, n => n.Contains("dequantized", StringComparison.Ordinal));
        using (var one = PqFile.Open(dir.File("1.pq")))
        using (var two = PqFile.Open(dir.File("2.pq")))
        {
            Assert.Equal(one.Config.GetRawText(), two.Config.GetRawText());
            foreach (var spec in ModelTensors.For(ModelConfig.Parse(one.Config, "1.pq")))
            {
                Assert.Equal(one[spec.Name].Format, two[spec.Name].Format);
                Assert.True(one[spec.Name].Data.SequenceEqual(two[spec.Name].Data), $"{spec.Name} changed");
            }
        }
        // The original and its first import differ only by the fp16 rounding of scales the export reports.
        Assert.Equal(Logits(dir.File("1.pq")), Logits(dir.File("2.pq")));
        float[] original = Logits(dir.File("0.pq")), imported = Logits(dir.File("1.pq"));
        double scale = original.Max(Math.Abs);
        for (int i = 0; i < original.Length; i++)
            Assert.True(Math.Abs(original[i] - imported[i]) <= 2e-3 * scale, $"logit {i}: {original[i]} vs " +
                $"{imported[i]}");
    }

    private static float[] Logits(string pq)
    {
        using var model = LanguageModel.Load(pq, new CpuBackendOptions { Threads = 1, Exact = true });
        using var session = new Session(model, new SessionOptions { ContextLength = 16 });
        return session.Forward([1, 450, 4996, 17354, 1701]).ToArray();
    }

    [Fact]
    public void Block_types_without_an_exact_grid_are_kept_as_exact_f32_and_ternary_tq1_0_maps_exactly()
    {
        using var dir = new TempDir();
        HfCheckpointWriter.Write(dir.File("hf"), "mobilellm", Mobilellm256(), HfWeights.Snapped, WeightFormat.Ternary,
            pytorchBin: false, ConverterTests.LlamaTokenizer(), seed: 4);
        HfConverter.Convert(dir.File("hf"), dir.File("0.pq"), new ConversionOptions());
        GgufExporter.Export(dir.File("0.pq"), dir.File("tq2.gguf"), overwrite: false);
        var viaTq2 = HfConverter.ConvertGguf(dir.File("tq2.gguf"), dir.File("tq2.pq"), new ConversionOptions());

        // TQ1_0 packs the same trits in base 3: the import must give the same ternary tensors.
        GgufRewriter.Rewrite(dir.File("tq2.gguf"), dir.File("tq1.gguf"), (t, bytes) => t.Type == GgmlType.TQ2_0
            ? (GgmlType.TQ1_0, GgufRewriter.Tq2ToTq1(bytes)) : (t.Type, bytes));
        var viaTq1 = HfConverter.ConvertGguf(dir.File("tq1.gguf"), dir.File("tq1.pq"), new ConversionOptions());
        Assert.All(viaTq1.Tensors.Where(t => t.IsProjection), t => Assert.Equal(WeightFormat.Ternary, t.Format));
        Assert.Contains(viaTq1.Notes, n => n.StartsWith("GGUF TQ1_0 -> ternary, every value exact: 14",
            StringComparison.Ordinal));
        using (var a = PqFile.Open(dir.File("tq2.pq")))
        using (var b = PqFile.Open(dir.File("tq1.pq")))
            foreach (var t in viaTq2.Tensors) Assert.True(a[t.Name].Data.SequenceEqual(b[t.Name].Data), t.Name);

        // Ternary blocks whose scales differ along a row have no per-row α: f32, exact, and said so. Only the down
        // projection's rows (512 inputs) span two blocks.
        GgufRewriter.Rewrite(dir.File("tq2.gguf"), dir.File("mixed.gguf"), (t, bytes) =>
        {
            if (t.Type != GgmlType.TQ2_0) return (t.Type, bytes);
            bytes = (byte[])bytes.Clone();
            BinaryPrimitives.WriteHalfLittleEndian(bytes.AsSpan(64), (Half)0.125f); // the first block's d
            return (t.Type, bytes);
        });
        var mixed = HfConverter.ConvertGguf(dir.File("mixed.gguf"), dir.File("mixed.pq"), new ConversionOptions());
        Assert.All(mixed.Tensors.Where(t => t.IsProjection), t =>
        {
            bool down = t.Name.Contains("down_proj", StringComparison.Ordinal);
            Assert.Equal(down ? WeightFormat.F32 : WeightFormat.Ternary, t.Format);
            Assert.Equal(0, t.MaxError);
        });
        Assert.Contains("GGUF TQ2_0 -> f32, dequantized exactly (no .pq grid holds these blocks; --bits requantizes " +
            "them): 2 tensor(s)", mixed.Notes);
        // Exact means: every value is llama.cpp's own dequantization, checked with the tests' independent reader.
        var reader = new GgufReader(dir.File("mixed.gguf"));
        float[] expected = reader.Dequantize("blk.0.ffn_down.weight");
        using var converted = PqFile.Open(dir.File("mixed.pq"));
        var values = new float[expected.Length];
        FloatCodec.Decode(WeightFormat.F32, converted["model.layers.0.mlp.down_proj.weight"].Data, 0, values);
        Assert.Equal(expected, values);
    }

    [Fact]
    public void Hostile_gguf_headers_are_refused_with_the_problem_named()
    {
        using var dir = new TempDir();
        HfCheckpointWriter.Write(dir.File("hf"), "mobilellm", Mobilellm256(), HfWeights.Snapped, WeightFormat.Q2Seq,
            pytorchBin: false, ConverterTests.LlamaTokenizer(), seed: 6);
        HfConverter.Convert(dir.File("hf"), dir.File("0.pq"), new ConversionOptions());
        GgufExporter.Export(dir.File("0.pq"), dir.File("good.gguf"), overwrite: false);
        byte[] good = File.ReadAllBytes(dir.File("good.gguf"));

        string Refusal(byte[] bytes)
        {
            File.WriteAllBytes(dir.File("bad.gguf"), bytes);
            var run = ProgramRunner.Run("paretoq-convert", "", [], dir.File("bad.gguf"), "-o", dir.File("out.pq"),
                "--force");
            Assert.Equal(1, run.Exit);
            Assert.True(run.Err.Trim().Split('\n').Length == 1, run.Err);
            Assert.False(File.Exists(dir.File("out.pq")));
            return run.Err;
        }
        byte[] Patched(int at, params byte[] value)
        {
            byte[] b = (byte[])good.Clone();
            value.CopyTo(b, at);
            return b;
        }
        static byte[] U64(ulong v) => BitConverter.GetBytes(v);
        const int FirstKeyLength = 24; // after magic, version, tensor count and key count
        Assert.Contains("inside its header", Refusal(good[..20]));
        Assert.Contains("bytes left can hold", Refusal(good[..100_000]));
        Assert.Contains("past the end of the file", Refusal(good[..^1]));
        Assert.Contains("GGUF version 7", Refusal(Patched(4, 7, 0, 0, 0)));
        Assert.Contains("tensor count 4294967296", Refusal(Patched(8, U64(1UL << 32))));
        Assert.Contains("metadata key of 1099511627776 bytes", Refusal(Patched(FirstKeyLength, U64(1UL << 40))));
        Assert.Contains("does not understand",
            Refusal(Replace(good, "llama.embedding_length", "llama.embedding_lengtX")));
        const string Architecture = "general.architecture\b\0\0\0\u0005\0\0\0\0\0\0\0";
        Assert.Contains("architecture 'mamba', which is not imported",
            Refusal(Replace(good, Architecture + "llama", Architecture + "mamba")));
        Assert.Contains("not valid UTF-8", Refusal(Replace(good, "general.name", "general.nam\u00ff", latin1: true)));
        Assert.Contains("appears twice", Refusal(Replace(good, "blk.1.attn_q.weight", "blk.0.attn_q.weight")));
        Assert.Contains("Q4_K, which is not imported",
            Refusal(PatchTensorType(good, "blk.0.attn_q.weight", 12)));
        // A layer count is range-checked before it sizes anything (issue 36, G2: 2^24 reached 2.3 GiB).
        int blockCount = good.AsSpan().IndexOf("llama.block_count"u8) + "llama.block_count"u8.Length + 4;
        Assert.Contains("llama.block_count 16777216, more than the 4096 layers",
            Refusal(Patched(blockCount, BitConverter.GetBytes(1u << 24))));
        // Issue 36, G4: a tensor that is no llama tensor is refused by name, not silently carried or shadowed.
        Assert.Contains("is not a tensor of a llama GGUF",
            Refusal(Replace(good, "output_norm.weight", "output_norX.weight")));
        // G5: a NaN hyperparameter is named (it reached System.Text.Json's own message).
        int epsilon = good.AsSpan().IndexOf("llama.attention.layer_norm_rms_epsilon"u8)
            + "llama.attention.layer_norm_rms_epsilon"u8.Length + 4;
        Assert.Contains("layer_norm_rms_epsilon = NaN, not a positive finite number",
            Refusal(Patched(epsilon, BitConverter.GetBytes(float.NaN))));
        // G3: a vocabulary the written file's own reader would refuse (here a duplicate piece) is refused before
        // anything is written.
        Assert.Contains("<0x42>", Refusal(Replace(good, "<0x41>", "<0x42>")));

        // G5: the alignment's type is named (a float32 here, where the writer put a uint32).
        int alignmentType = good.AsSpan().IndexOf("general.alignment"u8) + "general.alignment"u8.Length;
        Assert.Contains("general.alignment is a float, not an integer",
            Refusal(Patched(alignmentType, BitConverter.GetBytes(6u))));

        // Rewritten through the runtime's own writer: what a byte patch cannot express.
        byte[] Rewritten(Func<GgufTensor, (string Name, long[] Dims)>? tensor = null,
            Action<GgufWriter>? metadata = null, string? dropKey = null)
        {
            GgufRewriter.Rewrite(dir.File("good.gguf"), dir.File("rewritten.gguf"), (t, data) => (t.Type, data),
                tensor, metadata, dropKey);
            return File.ReadAllBytes(dir.File("rewritten.gguf"));
        }
        // G4: a second spelling of a layer index, and a tensor of more than two dimensions.
        Assert.Contains("'blk.00.attn_q.weight': is not a tensor of a llama GGUF", Refusal(Rewritten(t
            => (t.Name == "blk.0.attn_q.weight" ? "blk.00.attn_q.weight" : t.Name, t.Dims))));
        Assert.Contains("has 3 dimensions; llama tensors have 1 or 2", Refusal(Rewritten(t
            => (t.Name, t.Name == "blk.0.attn_q.weight" ? [.. t.Dims, 1] : t.Dims))));
        // G5: per-layer arrays are named, and a chat template larger than a .pq holds is refused, not truncated.
        Assert.Contains("has metadata llama.attention.head_count_kv as an array (one value per layer)",
            Refusal(Rewritten(metadata: w => w.Add("llama.attention.head_count_kv", [2, 2]),
                dropKey: "llama.attention.head_count_kv")));
        Assert.Contains($"more than the {PqFile.MaxChatTemplateChars} a .pq file holds",
            Refusal(Rewritten(metadata: w => w.Add("tokenizer.chat_template",
                new string('x', PqFile.MaxChatTemplateChars + 1)), dropKey: "tokenizer.chat_template")));
    }

    private static byte[] Replace(byte[] file, string from, string to, bool latin1 = false)
    {
        byte[] a = Encoding.UTF8.GetBytes(from), b = latin1 ? Encoding.Latin1.GetBytes(to) : Encoding.UTF8.GetBytes(to);
        Assert.Equal(a.Length, b.Length);
        int at = file.AsSpan().IndexOf(a);
        Assert.True(at >= 0, from);
        byte[] copy = (byte[])file.Clone();
        b.CopyTo(copy, at);
        return copy;
    }

    // The type field follows the name, its dim count and dims.
    private static byte[] PatchTensorType(byte[] file, string tensor, uint type)
    {
        byte[] name = Encoding.UTF8.GetBytes(tensor);
        int at = file.AsSpan().IndexOf(name) + name.Length;
        uint dims = BinaryPrimitives.ReadUInt32LittleEndian(file.AsSpan(at));
        byte[] copy = (byte[])file.Clone();
        BinaryPrimitives.WriteUInt32LittleEndian(copy.AsSpan(at + 4 + 8 * (int)dims), type);
        return copy;
    }
}

/// <summary>Copies a GGUF file through the runtime's reader and writer, replacing tensors on the way.</summary>
internal static class GgufRewriter
{
    /// <summary>
    /// <paramref name="tensor"/> gives each tensor's type and data; <paramref name="rename"/>
    /// its name and dims; <paramref name="metadata"/> adds keys after <paramref name="dropKey"/> is left out.
    /// </summary>
    public static void Rewrite(string input, string output, Func<GgufTensor, byte[], (GgmlType, byte[])> tensor,
        Func<GgufTensor, (string Name, long[] Dims)>? rename = null, Action<GgufWriter>? metadata = null,
        string? dropKey = null)
    {
        using var file = GgufFile.Open(input);
        var writer = new GgufWriter();
        foreach (var (key, value) in file.Metadata)
        {
            if (key == dropKey) continue;
            switch (value)
            {
                case string s: writer.Add(key, s); break;
                case long l when key != "general.alignment": writer.Add(key, checked((uint)l)); break;
                case double d: writer.Add(key, (float)d); break;
                case bool b: writer.Add(key, b); break;
                case string[] a: writer.Add(key, a); break;
                case double[] a: writer.Add(key, a.Select(v => (float)v).ToArray()); break;
                case long[] a: writer.Add(key, a.Select(v => checked((int)v)).ToArray()); break;
            }
        }
        metadata?.Invoke(writer);
        foreach (var t in file.Tensors)
        {
            var bytes = new byte[t.Bytes];
            file.ReadBytes(t, 0, bytes);
            var (type, data) = tensor(t, bytes);
            var (name, dims) = rename?.Invoke(t) ?? (t.Name, t.Dims);
            writer.AddTensor(name, type, dims, () => data);
        }
        writer.Write(output, overwrite: true);
    }

    /// <summary>TQ2_0 blocks re-packed as TQ1_0, trit for trit (ggml's quantize_row_tq1_0 layout).</summary>
    public static byte[] Tq2ToTq1(byte[] tq2)
    {
        int blocks = tq2.Length / 66;
        var tq1 = new byte[blocks * 54];
        var trits = new int[256];
        for (int b = 0; b < blocks; b++)
        {
            var x = tq2.AsSpan(b * 66, 66);
            for (int e = 0; e < 256; e++) trits[e] = x[e / 128 * 32 + e % 32] >> (e % 128 / 32 * 2) & 3;
            var y = tq1.AsSpan(b * 54, 54);
            // Five trits per byte, the first most significant, as a fraction of 3^5 rounded up: byte m of the first
            // 32 holds elements m, m + 32, ..., m + 128; bytes 32..48 hold 160 + m, ...; qh[j] holds 240 + j + 4n.
            for (int m = 0; m < 32; m++) y[m] = Pack(trits, m, 32, 5);
            for (int m = 0; m < 16; m++) y[32 + m] = Pack(trits, 160 + m, 16, 5);
            for (int j = 0; j < 4; j++) y[48 + j] = Pack(trits, 240 + j, 4, 4);
            x.Slice(64, 2).CopyTo(y[52..]);
        }
        return tq1;
    }

    private static byte Pack(int[] trits, int first, int stride, int count)
    {
        int q = 0;
        for (int n = 0; n < count; n++) q = q * 3 + trits[first + n * stride];
        for (int n = count; n < 5; n++) q *= 3;
        return (byte)((q * 256 + 242) / 243);
    }
}
