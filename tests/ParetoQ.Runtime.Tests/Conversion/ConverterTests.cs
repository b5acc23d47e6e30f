using ParetoQ.Runtime.Backends.Cpu;
using ParetoQ.Runtime.Backends;
using ParetoQ.Runtime.Conversion;
using ParetoQ.Runtime.Format;
using ParetoQ.Runtime.Interchange;
using ParetoQ.Runtime.Model;
using ParetoQ.Runtime.Quantization;
using ParetoQ.Runtime.Text;
using ParetoQ.TestModels;
using Xunit.Abstractions;

namespace ParetoQ.Runtime.Tests;

/// <summary>
/// paretoq-convert on real Hugging Face directory layouts, one per source kind, with the real LLaMA-2 tokenizer. Each
/// converted model's exact-mode logits are compared with an independent double-precision forward over the source
/// tensors (quantized, where the source is not already on a grid, by the formulas written out below).
/// </summary>
public sealed class ConverterTests(ITestOutputHelper output)
{
    private static readonly int[] Prompt = [1, 15043, 3186, 29892, 278, 4996, 17354, 1701, 29916, 432, 17204];

    internal static Dictionary<string, byte[]> LlamaTokenizer() => new()
    {
        ["tokenizer.json"] = File.ReadAllBytes(TestData.Path("llama2/tokenizer.json")),
        ["tokenizer_config.json"] = """
            {"add_bos_token": true, "add_eos_token": false, "bos_token": {"__type": "AddedToken", "content": "<s>"}, "eos_token": "</s>",
             "clean_up_tokenization_spaces": false, "legacy": false, "model_max_length": 1000000000000000019884624838656, "pad_token": null,
             "padding_side": "right", "sp_model_kwargs": {}, "tokenizer_class": "LlamaTokenizer", "unk_token": "<unk>"}
            """u8.ToArray(),
        ["special_tokens_map.json"] = """{"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>"}"""u8.ToArray(),
    };

    // The ParetoQ quantizers of REFERENCE.md §1, written out independently of Quantizer. t = w/α is taken in fp32 as
    // PyTorch does: BF16 weights put many t exactly on rounding ties, where a double quotient would round differently.
    private static double FakeQuant(WeightFormat f, float w, float a)
    {
        double t = w / a;
        return f switch
        {
            WeightFormat.Binary => a * (double)Math.Sign(w),
            WeightFormat.Ternary
                => a * Math.Round((float)(1.5f * Math.Clamp((float)t, -0.99f, 0.99f)), MidpointRounding.ToEven) / 1.5,
            WeightFormat.Q2Seq
                => a * (Math.Round((float)(2f * Math.Clamp((float)t, -0.99f, 0.99f) - 0.5f),
                MidpointRounding.ToEven) + 0.5) / 2,
            WeightFormat.Q3Row => a * Math.Clamp(Math.Round(t, MidpointRounding.ToEven), -4, 3),
            WeightFormat.Q4Row => a * Math.Clamp(Math.Round(t, MidpointRounding.ToEven), -8, 7),
            _ => throw new ArgumentException(f.ToString()),
        };
    }

    private static float[] FakeQuantRows(WeightFormat f, float[] w, int cols, Func<int, float> alpha)
    {
        var r = new float[w.Length];
        for (int i = 0; i < w.Length; i++) r[i] = (float)FakeQuant(f, w[i], alpha(i / cols));
        return r;
    }

    // torchao-style int4 group-32: s = absmax/7.5 per 32 inputs of a row, q = clamp(round(w/s), −8, 7).
    private static float[] Int4Group32(float[] w, int cols)
    {
        var r = new float[w.Length];
        for (int row = 0; row < w.Length / cols; row++)
            for (int g = 0; g < cols; g += 32)
            {
                int start = row * cols + g, len = Math.Min(32, cols - g);
                float s = w.Skip(start).Take(len).Max(MathF.Abs) / 7.5f;
                for (int i = start; i < start + len; i++) r[i] = s == 0 ? 0
                    : (float)(s * Math.Clamp(Math.Round(w[i] / s, MidpointRounding.ToEven), -8, 7));
            }
        return r;
    }

    private static Dictionary<string,
        float[]> Dense(HfCheckpointWriter.Written src, Func<string, float[], float[]> projection)
    {
        var dense = new Dictionary<string, float[]>(StringComparer.Ordinal);
        foreach (var spec in ModelTensors.For(src.Config))
        {
            string name = src.Stored.ContainsKey(spec.Name) ? spec.Name
                : spec.Name.Replace(".mlp.", ".feed_forward.", StringComparison.Ordinal);
            var w = src.Stored[name];
            dense[spec.Name] = spec.IsProjection ? projection(name, w) : w;
        }
        return dense;
    }

    private double CompareLogits(string pq, ModelConfig config, IReadOnlyDictionary<string, float[]> dense,
        int[] prompt)
    {
        var expected = ReferenceTransformer.Forward(config, dense, prompt);
        using var model = LanguageModel.Load(pq, CpuBackendOptions.ExactMode);
        using var session = new Session(model, new SessionOptions { AllLogits = true, KvCache = KvCacheType.F32 });
        var logits = new float[prompt.Length * config.VocabSize];
        session.Forward(prompt, logits);
        double maxDiff = 0, maxRef = 0;
        for (int t = 0; t < prompt.Length; t++)
            for (int v = 0; v < config.VocabSize; v++)
            {
                maxDiff = Math.Max(maxDiff, Math.Abs(logits[t * config.VocabSize + v] - expected[t, v]));
                maxRef = Math.Max(maxRef, Math.Abs(expected[t, v]));
            }
        return maxDiff / maxRef;
    }

    private static ConversionReport Convert(string dir, string pq, BitsChoice bits = BitsChoice.Auto,
        WeightFormat head = WeightFormat.F32) =>
        HfConverter.Convert(dir, pq, new ConversionOptions { Bits = bits, Head = head });

    [Theory]
    [InlineData(WeightFormat.Binary)]
    [InlineData(WeightFormat.Ternary)]
    [InlineData(WeightFormat.Q2Seq)]
    [InlineData(WeightFormat.Q3Row)]
    [InlineData(WeightFormat.Q4Row)]
    public void Snapped_paretoq_checkpoints_are_detected_and_recovered_losslessly(WeightFormat grid)
    {
        using var dir = new TempDir();
        var src = HfCheckpointWriter.Write(dir.File("hf"), "mobilellm", HfCheckpointWriter.TinyMobileLlm(),
            HfWeights.Snapped, grid, pytorchBin: false, LlamaTokenizer(), seed: (int)grid);
        var report = Convert(src.Directory, dir.File("m.pq"));

        var projections = report.Tensors.Where(t => t.IsProjection).ToList();
        Assert.All(projections, t => Assert.Equal((TensorOrigin.Snapped, grid), (t.Origin, t.Format)));
        // Lossless: every weight the runtime uses, rounded to BF16, is the stored BF16 value bit for bit.
        using (var file = PqFile.Open(dir.File("m.pq")))
            foreach (var t in projections)
            {
                var layout = new PackedLayout(grid, t.Rows, t.Cols);
                var codes = new byte[layout.PaddedCols];
                var row = new float[t.Cols];
                for (int r = 0; r < t.Rows; r++)
                {
                    WeightPacker.DequantizeRow(layout, file[t.Name].Data, r, codes, row);
                    for (int c = 0; c < t.Cols; c++)
                        Assert.Equal(src.Stored[t.Name][r * t.Cols + c],
                            HfCheckpointWriter.RoundTo(SourceDType.BF16, row[c]));
                }
            }
        double maxError = projections.Max(t => t.MaxError);
        double err = CompareLogits(dir.File("m.pq"), src.Config, Dense(src, (_, w) => w), Prompt);
        output.WriteLine($"{grid}: max |runtime − stored| {maxError:E2}, logits vs reference over the stored BF16 tensors {err:E2}");
        // The runtime's fp32 α·level differs from its BF16 rounding by at most half a BF16 ulp (2^-9 relative).
        Assert.True(err < 5e-3, $"relative logit error {err:E2}");
    }

    [Fact]
    public void A_llama_bin_checkpoint_with_w_bits_and_a_tied_lm_head_converts_like_safetensors()
    {
        using var dir = new TempDir();
        var cfg = HfCheckpointWriter.TinyMobileLlm();
        var src = HfCheckpointWriter.Write(dir.File("hf"), "llama", cfg, HfWeights.Snapped, WeightFormat.Ternary,
            pytorchBin: true, LlamaTokenizer(), configExtra: "\"w_bits\": 0", seed: 5, headTensorToo: true);
        var report = Convert(src.Directory, dir.File("m.pq"), head: WeightFormat.I8Row);
        Assert.All(report.Tensors.Where(t => t.IsProjection), t => Assert.Equal(WeightFormat.Ternary, t.Format));
        Assert.Equal(WeightFormat.I8Row, report.Tensors.Single(t => t.Name == "model.embed_tokens.weight").Format);
        using var file = PqFile.Open(dir.File("m.pq"));
        Assert.Equal("1.58", file.Provenance.Bits);
        Assert.Equal("hf-json", file.Tokenizer.Kind);
        Assert.Equal([1, 15043, 3186],
            Runtime.Text.Tokenizers.FromFile(file, 32000).Encode("Hello world", addBos: true));
    }

    [Fact]
    public void Trainer_checkpoints_quantize_latent_weights_with_their_clip_values()
    {
        using var dir = new TempDir();
        var src = HfCheckpointWriter.Write(dir.File("hf"), "llama", HfCheckpointWriter.TinyMobileLlm(),
            HfWeights.LatentWithClip, WeightFormat.Q2Seq, pytorchBin: true, LlamaTokenizer(),
                configExtra: "\"w_bits\": 2", seed: 11);
        var report = Convert(src.Directory, dir.File("m.pq"));
        Assert.All(report.Tensors.Where(t => t.IsProjection), t
            => Assert.Equal((TensorOrigin.TrainedClip, WeightFormat.Q2Seq), (t.Origin, t.Format)));
        var dense = Dense(src, (name, w) =>
        {
            var clip = src.Stored[name[..^".weight".Length] + ".weight_clip_val"];
            return FakeQuantRows(WeightFormat.Q2Seq, w, w.Length / clip.Length, r => MathF.Max(clip[r], 1e-5f));
        });
        double err = CompareLogits(dir.File("m.pq"), src.Config, dense, Prompt);
        output.WriteLine($"trainer 2-bit: {err:E2}");
        Assert.True(err < 1e-4, $"relative logit error {err:E2}");
    }

    [Fact]
    public void Full_precision_mobilellm_with_bits_is_quantized_round_to_nearest()
    {
        using var dir = new TempDir();
        var src = HfCheckpointWriter.Write(dir.File("hf"), "mobilellm",
            HfCheckpointWriter.TinyMobileLlm(layerSharing: true), HfWeights.FullPrecision, default, pytorchBin: false,
            LlamaTokenizer(), seed: 13);
        // --bits auto keeps an ordinary full-precision model at its own precision, and says so.
        var kept = Convert(src.Directory, dir.File("kept.pq"));
        Assert.All(kept.Tensors.Where(t => t.IsProjection), t
            => Assert.Equal((TensorOrigin.Float, WeightFormat.BF16), (t.Origin, t.Format)));
        Assert.Contains(kept.Notes, n => n.StartsWith("full-precision projections kept as bf16", StringComparison.Ordinal));

        var report = Convert(src.Directory, dir.File("m.pq"), BitsChoice.Bits4);
        Assert.Equal(2, report.Source.Config.LayerRepeat);
        Assert.All(report.Tensors.Where(t => t.IsProjection), t
            => Assert.Equal((TensorOrigin.RoundToNearest, WeightFormat.Q4Row), (t.Origin, t.Format)));
        var dense = Dense(src, (name, w) =>
        {
            var spec = ModelTensors.For(src.Config).Single(s => s.Name == name);
            return FakeQuantRows(WeightFormat.Q4Row, w, spec.Cols, r
                => MathF.Max(w.Skip(r * spec.Cols).Take(spec.Cols).Max(MathF.Abs) / 7f, 1e-5f));
        });
        double err = CompareLogits(dir.File("m.pq"), src.Config, dense, Prompt);
        output.WriteLine($"PTQ 4-bit, layer sharing: {err:E2}");
        Assert.True(err < 1e-4, $"relative logit error {err:E2}");
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void MobileLlm_pro_converts_from_bf16_or_fake_quant_scales(bool fakeQuantScales)
    {
        using var dir = new TempDir();
        var cfg = TestModelGenerator.MobileLlmPro();
        var src = HfCheckpointWriter.Write(dir.File("hf"), "llama4_text", cfg, fakeQuantScales
            ? HfWeights.FakeQuantScale : HfWeights.FullPrecision, default, pytorchBin: false,
                HfCheckpointWriter.ByteLevelTiktokenFiles(), seed: 17);
        Assert.Contains(src.Stored.Keys, k => k.Contains(".feed_forward.gate_proj.", StringComparison.Ordinal));
        var report = Convert(src.Directory, dir.File("m.pq"));
        var expectedFormat = fakeQuantScales ? WeightFormat.Q4Row : WeightFormat.Q4G32;
        Assert.All(report.Tensors.Where(t => t.IsProjection), t => Assert.Equal(expectedFormat, t.Format));
        var dense = Dense(src, (name, w) =>
        {
            int rows = ModelTensors.For(cfg).Single(s
                => s.Name == name.Replace(".feed_forward.", ".mlp.", StringComparison.Ordinal)).Rows;
            if (!fakeQuantScales) return Int4Group32(w, w.Length / rows);
            var s = src.Stored[name[..^".weight".Length] + ".weight_fake_quantizer.scale"];
            return FakeQuantRows(WeightFormat.Q4Row, w, w.Length / rows, r => s[r]);
        });
        using (var file = PqFile.Open(dir.File("m.pq")))
        {
            Assert.Equal("tiktoken", file.Tokenizer.Kind);
            Assert.Equal([257, 260], file.Tokenizer.EosIds);
            Assert.Equal(260, file.Tokenizer.SpecialTokens["<|eot|>"]);
            Assert.NotNull(file.Tokenizer.ChatTemplate);
            // The stored template names its family: the runtime chats in Llama-4 headers.
            Assert.Equal(ChatFormat.Llama4, ChatTemplate.Detect(file.Tokenizer.ChatTemplate,
                file.Tokenizer.SpecialTokens, file.Tokenizer.BosId >= 0));
        }
        int[] prompt = Enumerable.Range(0, 21).Select(i => (i * 37 + 11) % 250).ToArray();
        double err = CompareLogits(dir.File("m.pq"), report.Source.Config, dense, prompt);
        output.WriteLine($"MobileLLM-Pro {(fakeQuantScales ? "fake-quant scales" : "BF16 → int4 g32")}: {err:E2}");
        Assert.True(err < 1e-4, $"relative logit error {err:E2}");
    }

    [Fact]
    public void Bad_inputs_fail_cleanly_and_leave_no_file()
    {
        using var dir = new TempDir();
        var src = HfCheckpointWriter.Write(dir.File("hf"), "llama", HfCheckpointWriter.TinyMobileLlm(),
            HfWeights.Snapped, WeightFormat.Q2Seq, pytorchBin: false, LlamaTokenizer(), configExtra: "\"w_bits\": 2",
                seed: 19);
        string pq = dir.File("out.pq");
        string config = File.ReadAllText(Path.Combine(src.Directory, "config.json"));
        void Expect<T>(string fragment) where T : Exception
        {
            var e = Assert.ThrowsAny<T>(() => Convert(src.Directory, pq));
            Assert.Contains(fragment, e.Message);
            Assert.False(File.Exists(pq));
            Assert.Empty(Directory.GetFiles(dir.Path, "*.tmp"));
        }

        File.WriteAllText(Path.Combine(src.Directory, "config.json"),
            config.Replace("\"use_cache\": true", "\"use_cache\": true, \"rope_interleave\": true"));
        Expect<ModelConfigException>("unknown field 'rope_interleave'");
        File.WriteAllText(Path.Combine(src.Directory, "config.json"),
            config.Replace("\"hidden_act\": \"silu\"", "\"hidden_act\": \"gelu\""));
        Expect<ModelConfigException>("hidden_act 'gelu' is not implemented");
        File.WriteAllText(Path.Combine(src.Directory, "config.json"),
            config.Replace("\"num_key_value_heads\": 2", "\"num_key_value_heads\": 3"));
        Expect<ModelConfigException>("num_attention_heads 4 is not a multiple of num_key_value_heads 3");
        File.WriteAllText(Path.Combine(src.Directory, "config.json"),
            config.Replace("\"use_cache\": true",
            "\"use_cache\": true, \"rope_scaling\": {\"type\": \"yarn\", \"factor\": 4.0}"));
        Expect<ModelConfigException>("rope_scaling.rope_type 'yarn' is not implemented");
        File.WriteAllText(Path.Combine(src.Directory, "config.json"), config.Replace("\"w_bits\": 2", "\"w_bits\": 1"));
        Expect<CheckpointException>("row 0 is not on the binary grid");
        File.WriteAllText(Path.Combine(src.Directory, "config.json"), config);

        // An off-grid value in a snapped checkpoint is named by tensor and row.
        var tensors = src.Tensors;
        var bad = tensors.Select(t => t.Name == "model.layers.1.mlp.up_proj.weight"
            ? t with { Values = t.Values.Select((v, i) => i == 5 * 64 + 3 ? v * 1.37f : v).ToArray() } : t).ToList();
        SafetensorsWriter.Write(Path.Combine(src.Directory, "model.safetensors"), bad);
        Expect<CheckpointException>("tensor 'model.layers.1.mlp.up_proj.weight': row 5 is not on the q2_seq grid");

        SafetensorsWriter.Write(Path.Combine(src.Directory, "model.safetensors"),
            tensors.Append(new("model.layers.0.self_attn.q_proj.bias", SourceDType.BF16, [64], new float[64])));
        Expect<CheckpointException>("model.layers.0.self_attn.q_proj.bias");
        SafetensorsWriter.Write(Path.Combine(src.Directory, "model.safetensors"),
            tensors.Where(t => t.Name != "model.norm.weight"));
        Expect<CheckpointException>("tensor 'model.norm.weight': is missing");
        var good = SafetensorsWriter.Bytes(tensors);
        File.WriteAllBytes(Path.Combine(src.Directory, "model.safetensors"), good[..^100]);
        Expect<CheckpointException>("model.safetensors");
        File.WriteAllBytes(Path.Combine(src.Directory, "model.safetensors"), good);
        File.WriteAllBytes(Path.Combine(src.Directory, "tokenizer.json"), [0xff, 0xfe, 0x7b]);
        Expect<Runtime.Text.TokenizerException>("not valid UTF-8");
        File.WriteAllBytes(Path.Combine(src.Directory, "tokenizer.json"), LlamaTokenizer()["tokenizer.json"]);

        // An existing output is never replaced without --force, and it is left as it was.
        File.WriteAllText(pq, "precious");
        Assert.Contains("already exists", Assert.Throws<OutputExistsException>(() => Convert(src.Directory,
            pq)).Message);
        Assert.Equal("precious", File.ReadAllText(pq));
        HfConverter.Convert(src.Directory, pq, new ConversionOptions { Overwrite = true });
        using var file = PqFile.Open(pq);
    }

    [Fact]
    public void The_cli_converts_inspects_and_verifies()
    {
        using var dir = new TempDir();
        var src = HfCheckpointWriter.Write(dir.File("hf"), "mobilellm", HfCheckpointWriter.TinyMobileLlm(),
            HfWeights.Snapped, WeightFormat.Q2Seq, pytorchBin: true, LlamaTokenizer(), seed: 23);
        string pq = dir.File("m.pq");
        var convert = Run(src.Directory, "-o", pq);
        output.WriteLine(convert.Out);
        Assert.True(convert.Exit == 0, convert.Err);
        Assert.Contains("q2_seq x14: snapped grid", convert.Out);
        Assert.Matches(@"projections \d\.\d{3} bits/weight", convert.Out);

        var inspect = Run("inspect", pq);
        output.WriteLine(inspect.Out);
        Assert.Equal(0, inspect.Exit);
        Assert.Contains("\"architecture\": \"mobilellm\"", inspect.Out);
        Assert.Contains("model.layers.1.mlp.down_proj.weight", inspect.Out);
        Assert.Contains("tokenizer: hf-json", inspect.Out);
        Assert.Contains("bits 2", inspect.Out);

        Assert.Equal(0, Run("verify", pq).Exit);
        var again = Run(src.Directory, "-o", pq);
        Assert.Equal(1, again.Exit);
        Assert.Contains("already exists (--force replaces it)", again.Err);
        Assert.Equal(0, Run(src.Directory, "-o", pq, "--force", "--bits", "3").Exit);

        var bytes = File.ReadAllBytes(pq);
        bytes[^200] ^= 0x40;
        File.WriteAllBytes(pq, bytes);
        var verify = Run("verify", pq);
        Assert.Equal(1, verify.Exit);
        Assert.Contains("checksum mismatch", verify.Err);
        Assert.Equal(2, Run(src.Directory, "-o", pq, "--bits", "5").Exit);
    }

    private static (int Exit, string Out, string Err) Run(params string[] args)
        => ProgramRunner.Run("paretoq-convert", "", [], args);
}
