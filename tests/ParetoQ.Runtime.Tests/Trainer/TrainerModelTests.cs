using ParetoQ.Runtime.Backends;
using ParetoQ.Runtime.Backends.Cpu;
using ParetoQ.Runtime.Conversion;
using ParetoQ.Runtime.Format;
using ParetoQ.Runtime.Model;
using ParetoQ.Runtime.Quantization;
using ParetoQ.Runtime.Text;
using ParetoQ.TestModels;
using ParetoQ.Trainer;

namespace ParetoQ.Runtime.Tests;

/// <summary>
/// The whole trainable model: its loss gradient against central differences in double precision (every parameter,
/// with GQA, a sliding-window layer, layer sharing and the tied head in play), and, in QAT, its logits against the
/// runtime's exact-mode logits for the exported .pq.
/// </summary>
public sealed class TrainerModelTests
{
    private static ModelConfig Tiny(RopeLayout rope, int vocab = 13, int layerRepeat = 2) => new()
    {
        Architecture = "mobilellm", VocabSize = vocab, HiddenSize = 8, IntermediateSize = 12, NumLayers = 2,
            NumHeads = 2, NumKvHeads = 1, HeadDim = 4,
        MaxPositionEmbeddings = 64, RmsNormEps = 1e-5f, RopeTheta = 10000, RopeLayout = rope, TieWordEmbeddings = true,
            LayerRepeat = layerRepeat,
        LayerTypes = [AttentionKind.Global, AttentionKind.Local], SlidingWindow = 3, RopeLayers = [true, true],
    };

    private static void Fill<T>(TransformerModel<T> model, int seed) where T : unmanaged,
        System.Numerics.IFloatingPointIeee754<T>
    {
        var rng = new Random(seed);
        foreach (var slot in model.Slots)
            for (int i = 0; i < slot.Length; i++)
                model.Parameters[slot.Offset + i] = T.CreateChecked(slot.Spec.IsNorm
                    ? 1 + 0.1 * (rng.NextDouble() - 0.5) : (rng.NextDouble() * 2 - 1) * 0.5);
    }

    [Theory]
    [InlineData(RopeLayout.RotateHalf)]
    [InlineData(RopeLayout.Interleaved)]
    public void The_loss_gradient_matches_finite_differences_for_every_parameter(RopeLayout rope)
    {
        var model = new TransformerModel<double>(Tiny(rope));
        Fill(model, 7);
        int[] tokens = [1, 5, 9, 2, 12, 0, 7];
        int[] targets = [5, 9, 2, 12, 0, 7, -1];
        CheckEveryParameter(model, () => model.Forward(tokens, targets), stride: 1);
    }

    [Fact]
    public void A_batch_of_sequences_gives_the_mean_of_their_separate_losses_and_gradients()
    {
        // Three windows of 7 (longer than the local layer's window of 3): positions restart and attention stays within
        // each sequence, so the batch is exactly the sequences one at a time, averaged.
        var model = new TransformerModel<double>(Tiny(RopeLayout.RotateHalf));
        Fill(model, 3);
        int[] stream = [.. Enumerable.Range(0, 22).Select(i => i * 7 % 13)];
        int[] tokens = [.. stream[..7], .. stream[7..14], .. stream[14..21]];
        int[] targets = [.. stream[1..8], .. stream[8..15], .. stream[15..22]];
        model.ZeroGradients();
        double separate = 0;
        for (int s = 0; s < 3; s++)
        {
            separate += model.Forward(tokens.AsSpan(s * 7, 7), targets.AsSpan(s * 7, 7)) / 3;
            model.Backward(1.0 / 3);
        }
        var expected = (double[])model.Gradients.Clone();
        var logits = new double[21 * 13];
        model.ZeroGradients();
        double batched = model.Forward(tokens, targets, logits, sequences: 3);
        model.Backward(1);
        Assert.Equal(separate, batched, 1e-12);
        for (int i = 0; i < expected.Length; i++) Assert.Equal(expected[i], model.Gradients[i], 1e-12);
        // the second sequence's logits are those of running it alone
        var alone = new double[7 * 13];
        model.Forward(tokens.AsSpan(7, 7), targets.AsSpan(7, 7), alone);
        for (int i = 0; i < alone.Length; i++) Assert.Equal(alone[i], logits[7 * 13 + i], 1e-12);
        Assert.Throws<ArgumentException>(() => model.Forward(tokens, targets, sequences: 2));
    }

    // The analytic gradient of loss() (one Forward + Backward) against central differences, for every stride-th
    // parameter.
    private static void CheckEveryParameter(TransformerModel<double> model, Func<double> loss, int stride)
    {
        model.ZeroGradients();
        loss();
        model.Backward(1);
        var analytic = (double[])model.Gradients.Clone();
        const double eps = 1e-6;
        for (int i = 0; i < model.Parameters.Length; i += stride)
        {
            double saved = model.Parameters[i];
            model.Parameters[i] = saved + eps;
            double plus = loss();
            model.Parameters[i] = saved - eps;
            double minus = loss();
            model.Parameters[i] = saved;
            double numeric = (plus - minus) / (2 * eps);
            var slot = model.Slots.Last(s => s.Offset <= i);
            Assert.True(Math.Abs(numeric - analytic[i]) <= 1e-6 * Math.Max(1, Math.Abs(numeric)),
                $"{slot.Spec.Name}[{i - slot.Offset}]: analytic {analytic[i]}, numeric {numeric}");
        }
    }

    [Fact]
    public void The_distillation_loss_gradient_matches_finite_differences()
    {
        var model = new TransformerModel<double>(Tiny(RopeLayout.RotateHalf));
        Fill(model, 12);
        int[] tokens = [3, 1, 4, 1, 5, 9];
        int[] targets = [1, 4, 1, 5, 9, -1];
        var rng = new Random(13);
        double[] teacher = [.. Enumerable.Range(0, tokens.Length * 13).Select(_ => rng.NextDouble() * 4 - 2)];
        // every third keeps it quick
        CheckEveryParameter(model, () => model.Forward(tokens, targets, default, teacher, 0.3), stride: 3);
    }

    [Theory]
    [InlineData(WeightFormat.Binary)]
    [InlineData(WeightFormat.Ternary)]
    [InlineData(WeightFormat.Q2Seq)]
    [InlineData(WeightFormat.Q3Row)]
    [InlineData(WeightFormat.Q4Row)]
    public void QAT_logits_equal_the_runtime_logits_of_the_exported_model(WeightFormat grid)
    {
        var config = Tiny(RopeLayout.RotateHalf, vocab: ByteLevelVocabulary.Size(chatTokens: false), layerRepeat: 1);
        var model = new TransformerModel<float>(config, grid);
        Fill(model, 11);
        model.InitializeAlphas();
        using var dir = new TempDir();
        using var runtime = AssertExportGivesTrainerLogits(model, [256, 72, 101, 108, 108, 111, 44, 32, 119, 111, 114],
            ByteLevelVocabulary.Info(chatTokens: false), ByteLevelVocabulary.Ranks(), dir.File("qat.pq"),
            WeightFormats.Name(grid));
        Assert.Equal(grid, runtime.File[ModelTensors.Name(TensorRole.Down, 1)].Format);
    }

    /// <summary>Exports <paramref name="model"/> and checks the runtime's exact-mode logits of the file against the
    /// trainer's own over <paramref name="tokens"/> (1e-4 of the largest logit); returns the loaded export.</summary>
    private static LanguageModel AssertExportGivesTrainerLogits(TransformerModel<float> model, int[] tokens,
        PqTokenizerInfo tokenizer, byte[] tokenizerBytes, string path, string what)
    {
        PqExport.Write(model, path, tokenizer, tokenizerBytes,
            new PqProvenance("test", "2", "trainer test", new Dictionary<string, string>()));
        var runtime = LanguageModel.Load(path, CpuBackendOptions.ExactMode);
        AssertSameLogits(model, runtime, tokens, what);
        return runtime;
    }

    // The trainer's logits over tokens against the runtime's exact-mode ones (fp32 KV), within 1e-4 of the largest.
    private static void AssertSameLogits(TransformerModel<float> model, LanguageModel runtime, int[] tokens,
        string what)
    {
        int vocab = model.Config.VocabSize;
        var logits = new float[tokens.Length * vocab];
        model.Forward(tokens, Enumerable.Repeat(-1, tokens.Length).ToArray(), logits);
        using var session = new Session(runtime,
            new SessionOptions { AllLogits = true, ContextLength = 64, KvCache = KvCacheType.F32 });
        var expected = new float[tokens.Length * vocab];
        session.Forward(tokens, expected);
        double worst = 0, scale = expected.Max(MathF.Abs);
        for (int i = 0; i < logits.Length; i++) worst = Math.Max(worst, Math.Abs(logits[i] - expected[i]));
        Assert.True(worst <= 1e-4 * scale, $"{what}: max |trainer − runtime| {worst} of logits up to {scale}");
    }

    /// <summary>
    /// The shipped 2-bit and ternary models (models/stories260K-*.pq, written by the trainer's export) back in the
    /// trainer: their codes as latent weights and their per-row α as the quantizer's, so the trainer's fake-quant
    /// forward must give the runtime's logits of the shipped file.
    /// </summary>
    [Theory]
    [InlineData("stories260K-2bit.pq", WeightFormat.Q2Seq)]
    [InlineData("stories260K-ternary.pq", WeightFormat.Ternary)]
    public void A_shipped_models_runtime_logits_equal_the_trainers_fake_quant_logits(string file, WeightFormat grid)
    {
        string path = Path.Combine(TestData.RepoRoot(), "models", file);
        using var runtime = LanguageModel.Load(path, CpuBackendOptions.ExactMode);
        var latent = ModelImport.FromPq(path);
        var model = new TransformerModel<float>(latent.Config, grid);
        latent.Parameters.CopyTo(model.Parameters, 0);
        foreach (var slot in model.Slots.Where(s => s.Spec.IsProjection))
        {
            var tensor = runtime.File[slot.Spec.Name];
            Assert.Equal(grid, tensor.Format);
            var layout = new PackedLayout(grid, slot.Spec.Rows, slot.Spec.Cols);
            var alphas = model.AlphasOf(slot.Spec.Name);
            for (int r = 0; r < alphas.Length; r++) alphas[r] = WeightPacker.Scale(layout, tensor.Data, r, 0);
        }
        var tokenizer = TrainingTokenizer.Load(path);
        int[] tokens = tokenizer.Tokenizer.Encode("Once upon a time, there was a little girl named Lily.",
            addBos: true);
        AssertSameLogits(model, runtime, tokens, file);
    }

    /// <summary>The same on a model its authors trained: stories260K imported from its llama2.c file, snapped to 2 bits
    /// (interleaved RoPE, GQA, its own vocabulary), gives the runtime's logits once exported.</summary>
    [SharedDataFact]
    public void Stories260K_2bit_QAT_logits_equal_the_runtime_logits_of_its_export()
    {
        string Stories(string name) => SharedData.Path(Path.Combine("stories260K", name));
        var model = ModelImport.FromModel(Stories("stories260K.bin"), Stories("tok512.bin"))
            .WithProjections(WeightFormat.Q2Seq);
        using var dir = new TempDir();
        HfConverter.ConvertLlama2c(Stories("stories260K.bin"), Stories("tok512.bin"), dir.File("fp.pq"),
            new ConversionOptions());
        var tokenizer = TrainingTokenizer.Load(dir.File("fp.pq"));
        int[] tokens = tokenizer.Tokenizer.Encode("Once upon a time, there was a little girl named Lily.", addBos: true);
        using var runtime = AssertExportGivesTrainerLogits(model, tokens, tokenizer.Info, tokenizer.Bytes,
            dir.File("q2.pq"), "stories260K q2_seq");
        Assert.Equal(WeightFormat.Q2Seq, runtime.File["model.layers.0.mlp.down_proj.weight"].Format);
        Assert.Equal(RopeLayout.Interleaved, runtime.Config.RopeLayout);
    }

    [Fact]
    public void Import_gives_back_the_weights_of_a_pq_file_and_of_a_Hugging_Face_directory()
    {
        using var dir = new TempDir();
        // A .pq: f32 tensors come back bit for bit; quantized ones as the runtime dequantizes them (here: the
        // fake-quant values).
        var config = Tiny(RopeLayout.RotateHalf, vocab: ByteLevelVocabulary.Size(chatTokens: false), layerRepeat: 1);
        var original = new TransformerModel<float>(config, WeightFormat.Ternary);
        Fill(original, 5);
        original.InitializeAlphas();
        var provenance = new PqProvenance("test", "1.58", "trainer test", new Dictionary<string, string>());
        PqExport.Write(original, dir.File("t.pq"), ByteLevelVocabulary.Info(chatTokens: false),
            ByteLevelVocabulary.Ranks(), provenance, WeightFormat.F32);
        var imported = ModelImport.FromPq(dir.File("t.pq"));
        Assert.Null(imported.Projections);
        foreach (var slot in original.Slots)
        {
            var expected = original.Parameters.AsSpan(slot.Offset, slot.Length).ToArray();
            if (slot.Spec.IsProjection)
            {
                var alphas = original.AlphasOf(slot.Spec.Name);
                for (int i = 0; i < expected.Length; i++) expected[i] = Quantizer.FakeQuantize(WeightFormat.Ternary,
                    expected[i], alphas[i / slot.Spec.Cols]);
            }
            Assert.Equal(expected, imported.Parameters.AsSpan(slot.Offset, slot.Length).ToArray());
        }

        // A Hugging Face directory (bf16 safetensors, the LLaMA-2 tokenizer): every stored value, in the trainer's
        // layout.
        var hf = HfCheckpointWriter.Write(dir.File("hf"), "mobilellm", HfCheckpointWriter.TinyMobileLlm(),
            HfWeights.FullPrecision, WeightFormat.Q2Seq, pytorchBin: false, ConverterTests.LlamaTokenizer());
        var fromHf = ModelImport.FromModel(hf.Directory, null);
        foreach (var slot in fromHf.Slots)
            Assert.Equal(hf.Stored[slot.Spec.Name], fromHf.Parameters.AsSpan(slot.Offset, slot.Length).ToArray());
        Assert.StartsWith(dir.File("config.json"),
            Assert.ThrowsAny<Exception>(() => ModelImport.FromModel(dir.Path, null)).Message);
    }
}
