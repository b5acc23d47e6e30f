using ParetoQ.Runtime.Conversion;
using ParetoQ.Runtime.Format;
using ParetoQ.Runtime.Interchange;
using ParetoQ.Runtime.Model;
using ParetoQ.Runtime.Quantization;
using ParetoQ.Runtime.Text;
using ParetoQ.TestModels;

namespace ParetoQ.Runtime.Tests;

/// <summary>
/// .pq → GGUF export, read back with an independent GGUF reader and llama.cpp's dequantization formulas: every tensor
/// must hold the .pq model's values up to fp16 rounding of its scales, q/k rows in llama.cpp's RoPE order, with the
/// LLaMA vocabulary whose scores tokenize as the runtime does.
/// </summary>
public sealed class GgufExportTests
{
    // Rows of 256 and 512 inputs: whole TQ2_0/Q2_K super-blocks.
    private static ModelConfig Mobilellm256() => new()
    {
        Architecture = "mobilellm", VocabSize = 32000, HiddenSize = 256, IntermediateSize = 512, NumLayers = 2,
            NumHeads = 4, NumKvHeads = 2, HeadDim = 64,
        MaxPositionEmbeddings = 256, RmsNormEps = 1e-5f, RopeTheta = 10000, RopeLayout = RopeLayout.RotateHalf,
            TieWordEmbeddings = true,
        LayerTypes = [AttentionKind.Global, AttentionKind.Global], RopeLayers = [true, true],
    };

    private static string ConvertHf(TempDir dir, ModelConfig config, HfWeights weights, WeightFormat grid,
        ConversionOptions options)
    {
        HfCheckpointWriter.Write(dir.File("hf"), "mobilellm", config, weights, grid, pytorchBin: false,
            ConverterTests.LlamaTokenizer(), seed: 5);
        string pq = dir.File("model.pq");
        HfConverter.Convert(dir.File("hf"), pq, options);
        return pq;
    }

    public static TheoryData<WeightFormat, string, string> Grids => new()
    {
        { WeightFormat.Binary, "TQ2_0", "Q8_0" },
        { WeightFormat.Ternary, "TQ2_0", "Q8_0" },
        { WeightFormat.Q2Seq, "Q2_K", "Q8_0" },
        { WeightFormat.Q3Row, "Q4_0", "Q8_0" },
        { WeightFormat.Q4Row, "Q4_0", "Q8_0" },
        { WeightFormat.Q4G32, "Q4_0", "F16" },
    };

    [Theory]
    [MemberData(nameof(Grids))]
    public void Every_grid_maps_to_a_ggml_type_that_holds_its_values(WeightFormat grid, string projectionType,
        string embeddingType)
    {
        using var dir = new TempDir();
        string pq = grid == WeightFormat.Q4G32
            ? ConvertHf(dir, Mobilellm256(), HfWeights.FullPrecision, default,
                new ConversionOptions { Bits = BitsChoice.Int4, Head = WeightFormat.F16 })
            : ConvertHf(dir, Mobilellm256(), HfWeights.Snapped, grid, new ConversionOptions());
        var report = GgufExporter.Export(pq, dir.File("model.gguf"), overwrite: false);

        var gguf = new GgufReader(dir.File("model.gguf"));
        using var file = PqFile.Open(pq);
        var c = ModelConfig.Parse(file.Config, pq);
        Assert.Equal("llama", gguf.Get<string>("general.architecture"));
        Assert.Equal(2u, gguf.Get<uint>("llama.block_count"));
        Assert.Equal(256u, gguf.Get<uint>("llama.embedding_length"));
        Assert.Equal(4u, gguf.Get<uint>("llama.attention.head_count"));
        Assert.Equal(2u, gguf.Get<uint>("llama.attention.head_count_kv"));
        Assert.Equal(1e-5f, gguf.Get<float>("llama.attention.layer_norm_rms_epsilon"));
        Assert.Equal(20, gguf.Tensors.Count); // embedding, 2 × 9 layer tensors, output norm; the head is tied
        Assert.False(gguf.Tensors.ContainsKey("output.weight"));

        var expectedType = new Dictionary<string,
            uint> { ["TQ2_0"] = 35, ["Q2_K"] = 10, ["Q4_0"] = 2, ["Q8_0"] = 8, ["F16"] = 1, ["F32"] = 0 };
        foreach (var r in report.Tensors)
        {
            var info = gguf.Tensors[r.Name];
            var pqTensor = file[r.Source];
            bool norm = pqTensor.Shape.Count == 1;
            uint want = norm ? 0 : r.Name == "token_embd.weight" ? expectedType[embeddingType]
                : expectedType[projectionType];
            Assert.True(want == info.Type, $"{r.Name}: ggml type {info.Type}, expected {want}");
            Assert.Null(r.Fallback);
            int rows = norm ? 1 : pqTensor.Shape[0], cols = norm ? pqTensor.Shape[0] : pqTensor.Shape[1];
            Assert.Equal(norm ? [cols] : new long[] { cols, rows }, info.Dims);

            // llama.cpp pairs q/k dims (2i, 2i+1); the runtime's rotate-half pairs (i, i + hd/2) of each head.
            bool permuted = r.Source.Contains("q_proj") || r.Source.Contains("k_proj");
            int hd = c.HeadDim;
            int SourceRow(int row) => !permuted ? row
                : row / hd * hd + (row % hd % 2 == 0 ? row % hd / 2 : row % hd / 2 + hd / 2);
            float[] actual = gguf.Dequantize(r.Name);
            var expected = new float[cols];
            var codes = WeightFormats.IsPacked(pqTensor.Format)
                ? new byte[new PackedLayout(pqTensor.Format, rows, cols).PaddedCols] : [];
            double worst = 0;
            for (int row = 0; row < rows; row++)
            {
                if (WeightFormats.IsPacked(pqTensor.Format)) WeightPacker.DequantizeRow(new PackedLayout(pqTensor.Format, rows, cols), pqTensor.Data, SourceRow(row), codes, expected);
                else FloatCodec.Decode(pqTensor.Format, pqTensor.Data, (long)SourceRow(row) * cols, expected);
                for (int k = 0; k < cols; k++)
                {
                    float e = expected[k], a = actual[(long)row * cols + k];
                    double rel = e == a ? 0 : Math.Abs(a - e) / Math.Abs(e);
                    Assert.True(rel <= 1.0 / 2048, $"{r.Name}[{row}, {k}]: GGUF {a}, .pq {e}");
                    worst = Math.Max(worst, rel);
                }
            }
            Assert.True(worst <= r.MaxScaleError * 1.0001 + 1e-7,
                $"{r.Name}: error {worst} above the reported {r.MaxScaleError}");
            Assert.True(r.MaxScaleError <= GgufExporter.MaxScaleRounding);
        }

        var tokens = gguf.Get<List<object>>("tokenizer.ggml.tokens").Cast<string>().ToList();
        var types = gguf.Get<List<object>>("tokenizer.ggml.token_type").Cast<int>().ToList();
        Assert.Equal(32000, tokens.Count);
        Assert.Equal(["<unk>", "<s>", "</s>", "<0x00>"], tokens.Take(4));
        Assert.Equal([2, 3, 3, 6], types.Take(4));
        Assert.Equal("▁the", tokens[278]);
        Assert.Equal(1u, gguf.Get<uint>("tokenizer.ggml.bos_token_id"));
        Assert.Equal(2u, gguf.Get<uint>("tokenizer.ggml.eos_token_id"));
        Assert.Equal(0u, gguf.Get<uint>("tokenizer.ggml.unknown_token_id"));
        Assert.True(gguf.Get<bool>("tokenizer.ggml.add_bos_token"));
        Assert.Equal("llama", gguf.Get<string>("tokenizer.ggml.model"));
    }

    [Fact]
    public void Exported_scores_tokenize_the_brown_corpus_as_the_runtime_does()
    {
        using var dir = new TempDir();
        string pq = ConvertHf(dir, HfCheckpointWriter.TinyMobileLlm(layerSharing: true), HfWeights.Snapped,
            WeightFormat.Ternary, new ConversionOptions());
        var report = GgufExporter.Export(pq, dir.File("model.gguf"), overwrite: false);
        var gguf = new GgufReader(dir.File("model.gguf"));

        // sentencepiece's rule (highest-scoring adjacent merge first), which llama.cpp's SPM tokenizer follows, over
        // the exported tokens, scores and types must reproduce the runtime's encodings.
        var pieces = gguf.Get<List<object>>("tokenizer.ggml.tokens").Cast<string>()
            .Zip(gguf.Get<List<object>>("tokenizer.ggml.scores").Cast<float>(),
                gguf.Get<List<object>>("tokenizer.ggml.token_type").Cast<int>())
            .Select(x => new SentencePiece(x.First, x.Second, (PieceType)x.Third));
        var fromGguf = SentencePieceBpeTokenizer.FromSentencePieceModel(SentencePieceModelWriter.Write(pieces),
            "gguf vocabulary");
        using var file = PqFile.Open(pq);
        var runtime = Tokenizers.FromFile(file, 32000);
        var lines = File.ReadLines(TestData.Path("brown/text.txt")).Take(3000).ToList();
        int tokens = 0;
        foreach (string line in lines)
        {
            int[] expected = runtime.Encode(line, addBos: true);
            Assert.True(expected.SequenceEqual(fromGguf.Encode(line, addBos: true)), $"encodings differ for: {line}");
            tokens += expected.Length;
        }
        Assert.True(tokens > 100_000);

        // Layer sharing is written out: 2 weight layers × 2 uses = 4 blocks, each use with the same data.
        Assert.Equal(4u, gguf.Get<uint>("llama.block_count"));
        Assert.Equal(gguf.Dequantize("blk.0.ffn_up.weight"), gguf.Dequantize("blk.1.ffn_up.weight"));
        Assert.Equal(gguf.Dequantize("blk.2.attn_q.weight"), gguf.Dequantize("blk.3.attn_q.weight"));
        Assert.NotEqual(gguf.Dequantize("blk.1.attn_q.weight"), gguf.Dequantize("blk.2.attn_q.weight"));
        Assert.Contains(report.Notes, n => n.Contains("layer sharing"));

        // Rows of 64 and 96 inputs are not whole 256-blocks: ternary falls back to Q4_0, which holds its levels too.
        Assert.All(report.Tensors.Where(t => t.SourceFormat == WeightFormat.Ternary), t =>
        {
            Assert.Equal(GgmlType.Q4_0, t.Type);
            Assert.Contains("not whole TQ2_0 blocks of 256", t.Fallback);
        });
        Assert.Equal(2u, gguf.Tensors["blk.0.ffn_down.weight"].Type);
    }

    [Fact]
    public void Models_llama_cpp_cannot_express_and_bad_outputs_are_refused_without_touching_files()
    {
        using var dir = new TempDir();
        string pro = dir.File("pro.pq");
        TestModelGenerator.Write(pro, TestModelGenerator.MobileLlmPro(), WeightFormat.Q2Seq, WeightFormat.I8Row,
            seed: 1);
        var e = Assert.Throws<NotSupportedException>(()
            => GgufExporter.Export(pro, dir.File("pro.gguf"), overwrite: false));
        Assert.Contains("architecture mobilellm-pro", e.Message);
        string byteLevel = dir.File("bytes.pq");
        TestModelGenerator.Write(byteLevel, TestModelGenerator.MobileLlm(), WeightFormat.Q2Seq, WeightFormat.I8Row,
            seed: 1);
        e = Assert.Throws<NotSupportedException>(()
            => GgufExporter.Export(byteLevel, dir.File("bytes.gguf"), overwrite: false));
        Assert.Contains("SentencePiece-style (LLaMA) tokenizer", e.Message);
        Assert.False(File.Exists(dir.File("pro.gguf")) || File.Exists(dir.File("bytes.gguf")));

        string pq = ConvertHf(dir, HfCheckpointWriter.TinyMobileLlm(), HfWeights.Snapped, WeightFormat.Q2Seq,
            new ConversionOptions());
        File.WriteAllText(dir.File("taken.gguf"), "keep me");
        Assert.Throws<OutputExistsException>(() => GgufExporter.Export(pq, dir.File("taken.gguf"), overwrite: false));
        Assert.Equal("keep me", File.ReadAllText(dir.File("taken.gguf")));
        Assert.Throws<ArgumentException>(() => GgufExporter.Export(pq, pq, overwrite: true));

        byte[] damaged = File.ReadAllBytes(pq);
        damaged[^100] ^= 0x10;
        File.WriteAllBytes(dir.File("damaged.pq"), damaged);
        Assert.Throws<PqFormatException>(()
            => GgufExporter.Export(dir.File("damaged.pq"), dir.File("damaged.gguf"), overwrite: false));
        Assert.False(File.Exists(dir.File("damaged.gguf")));
        Assert.Empty(Directory.GetFiles(dir.Path, "*.tmp"));

        GgufExporter.Export(pq, dir.File("taken.gguf"), overwrite: true);
        Assert.Equal("llama", new GgufReader(dir.File("taken.gguf")).Get<string>("general.architecture"));
    }

    [Fact]
    public void The_convert_command_exports_gguf_and_refuses_quantization_options()
    {
        using var dir = new TempDir();
        string pq = ConvertHf(dir, Mobilellm256(), HfWeights.Snapped, WeightFormat.Q2Seq, new ConversionOptions());
        var run = ProgramRunner.Run("paretoq-convert", "", [], pq, "--to", "gguf", "-o", dir.File("m.gguf"));
        Assert.True(run.Exit == 0, run.Err);
        Assert.Contains("q2_seq   -> Q2_K", run.Out);
        Assert.Contains("q/k rows permuted", run.Out);
        Assert.Equal(10u, new GgufReader(dir.File("m.gguf")).Tensors["blk.1.ffn_gate.weight"].Type);

        run = ProgramRunner.Run("paretoq-convert", "", [], pq, "--to", "gguf", "--bits", "2", "-o", dir.File("n.gguf"));
        Assert.Equal(2, run.Exit);
        Assert.Contains("GGUF export keeps the .pq file's formats", run.Err);
        run = ProgramRunner.Run("paretoq-convert", "", [], dir.File("hf"), "--to", "gguf", "-o", dir.File("n.gguf"));
        Assert.Equal(1, run.Exit);
        Assert.Contains("is a directory", run.Err);
        run = ProgramRunner.Run("paretoq-convert", "", [], pq, "--to", "gguf", "-o", dir.File("m.gguf"));
        Assert.Equal(1, run.Exit);
        Assert.Contains("already exists (--force replaces it)", run.Err);
    }
}
