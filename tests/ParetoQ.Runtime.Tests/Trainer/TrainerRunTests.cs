using ParetoQ.Runtime.Model;
using ParetoQ.Runtime.Quantization;
using ParetoQ.Runtime.Text;
using ParetoQ.Trainer;

namespace ParetoQ.Runtime.Tests;

/// <summary>Token files, checkpoints and the training loop on the real LLaMA-2 tokenizer and Brown-corpus
/// text.</summary>
public sealed class TrainerRunTests
{
    private static ModelConfig Small() => new()
    {
        Architecture = "mobilellm", VocabSize = 32000, HiddenSize = 16, IntermediateSize = 32, NumLayers = 2,
            NumHeads = 2, NumKvHeads = 1, HeadDim = 8,
        MaxPositionEmbeddings = 64, RmsNormEps = 1e-5f, RopeTheta = 10000, RopeLayout = RopeLayout.RotateHalf,
            TieWordEmbeddings = true,
        LayerTypes = [AttentionKind.Global, AttentionKind.Global], RopeLayers = [true, true],
    };

    private static (int[] Train, int[] Validation) Tokens(TempDir dir)
    {
        var tokenizer = SentencePieceBpeTokenizer.FromHuggingFaceJson(File.ReadAllBytes(TestData.Path("llama2/tokenizer.json")), "llama2");
        var report = TokenData.Build(File.ReadLines(TestData.Path("brown/text.txt")).Take(400), tokenizer, 32000,
            dir.File("train.tokens"), dir.File("val.tokens"));
        Assert.Equal(400, report.Documents);
        Assert.True(report.ValidationTokens > 500 && report.TrainTokens > 18 * report.ValidationTokens);
        return (TokenData.Read(dir.File("train.tokens"), 32000), TokenData.Read(dir.File("val.tokens"), 32000));
    }

    private static TrainingState Fresh(WeightFormat? grid = null)
    {
        var model = new TransformerModel<float>(Small(), grid);
        var rng = new Random(3);
        foreach (var slot in model.Slots)
            for (int i = 0; i < slot.Length; i++)
                model.Parameters[slot.Offset + i] = slot.Spec.IsNorm ? 1f : (float)((rng.NextDouble() * 2 - 1) * 0.05);
        if (grid is not null) model.InitializeAlphas();
        return new TrainingState(model, new AdamW(model, new AdamWSettings { LearningRate = 2e-3, TotalSteps = 12 }),
            Runtime.Generation.Pcg32.FromSeed(9).State, new Dictionary<string, string> { ["phase"] = "test" });
    }

    [Fact]
    public void Token_files_round_trip_and_refuse_damage()
    {
        using var dir = new TempDir();
        var (train, _) = Tokens(dir);
        Assert.Equal(1, train[0]); // each document starts with BOS
        byte[] bytes = File.ReadAllBytes(dir.File("train.tokens"));
        File.WriteAllBytes(dir.File("cut.tokens"), bytes[..^10]);
        Assert.Contains("truncated",
            Assert.Throws<InvalidDataException>(() => TokenData.Read(dir.File("cut.tokens"), 32000)).Message);
        bytes[100] ^= 1;
        File.WriteAllBytes(dir.File("flip.tokens"), bytes);
        Assert.Contains("checksum",
            Assert.Throws<InvalidDataException>(() => TokenData.Read(dir.File("flip.tokens"), 32000)).Message);
        Assert.Contains("vocabulary of 32000",
            Assert.Throws<InvalidDataException>(() => TokenData.Read(dir.File("train.tokens"), 258)).Message);
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void A_resumed_run_reproduces_the_loss_curve_exactly(bool qat)
    {
        using var dir = new TempDir();
        var (train, validation) = Tokens(dir);
        var settings = new LoopSettings { Steps = 12, SequenceLength = 24, SequencesPerStep = 2, EvaluateEvery = 4,
            EvaluationWindows = 4, CheckpointEvery = 6, CheckpointPath = dir.File("run.ckpt"),
            MetricsPath = dir.File("run.jsonl") };
        var straight = new List<StepReport>();
        TrainingLoop.Run(Fresh(qat ? WeightFormat.Q2Seq : null), train, validation, settings, r =>
        {
            straight.Add(r);
            if (r.Step == 6) File.Copy(dir.File("run.ckpt"), dir.File("step6.ckpt"));
        });
        Assert.Equal(12, straight.Count);
        if (!qat) Assert.True(straight[^1].ValidationLoss < straight[3].ValidationLoss, "the validation loss falls");

        var resumed = Checkpoint.Load(dir.File("step6.ckpt"));
        Assert.Equal(6, resumed.Optimizer.Step);
        Assert.Equal("test", resumed.Run["phase"]);
        var after = new List<StepReport>();
        // as if the run had logged steps 7..12 and then died
        File.Copy(dir.File("run.jsonl"), dir.File("resumed.jsonl"));
        TrainingLoop.Run(resumed, train, validation,
            settings with { CheckpointPath = dir.File("resumed.ckpt"), MetricsPath = dir.File("resumed.jsonl") },
            after.Add);
        Assert.Equal(straight.Skip(6).Select(r => r.Loss), after.Select(r => r.Loss));
        Assert.Equal(straight[^1].ValidationLoss, after[^1].ValidationLoss);
        Assert.Equal(File.ReadAllBytes(dir.File("run.ckpt")), File.ReadAllBytes(dir.File("resumed.ckpt")));
        Assert.Equal(12, File.ReadAllLines(dir.File("run.jsonl")).Length);
        // The resumed metrics log each step once, in order, with the token count carried on.
        var steps = File.ReadAllLines(dir.File("resumed.jsonl")).Select(l
            => System.Text.Json.JsonDocument.Parse(l).RootElement).ToArray();
        Assert.Equal(Enumerable.Range(1, 12), steps.Select(e => e.GetProperty("step").GetInt32()));
        Assert.Equal(straight[^1].Tokens, steps[^1].GetProperty("tokens").GetInt64());
        Assert.Equal(straight[^1].Tokens, after[^1].Tokens);

        byte[] damaged = File.ReadAllBytes(dir.File("run.ckpt"));
        damaged[damaged.Length / 2] ^= 4;
        File.WriteAllBytes(dir.File("bad.ckpt"), damaged);
        Assert.Contains("checksum",
            Assert.Throws<InvalidDataException>(() => Checkpoint.Load(dir.File("bad.ckpt"))).Message);
    }

    [Fact]
    public void Validation_in_batches_gives_the_mean_of_its_windows()
    {
        using var dir = new TempDir();
        var (_, validation) = Tokens(dir);
        var model = Fresh().Model;
        double one = TrainingLoop.ValidationLoss(model, validation, 24, 7);
        // batches of 3: two full ones and a last window alone
        double batched = TrainingLoop.ValidationLoss(model, validation, 24, 7, batch: 3);
        Assert.Equal(one, batched, 1e-5);
        Assert.True(one > 5, $"validation loss {one}");
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void Steps_after_the_first_allocate_almost_nothing(bool qat)
    {
        using var dir = new TempDir();
        var (train, validation) = Tokens(dir);
        // Validation at steps 3, 6, 9 and 10, in the training batch's shape: it reuses the step's activations.
        var settings = new LoopSettings { Steps = 10, SequenceLength = 24, SequencesPerStep = 2, EvaluateEvery = 3,
            EvaluationWindows = 2, CheckpointEvery = 100, MetricsPath = dir.File("m.jsonl") };
        var allocated = new List<long>();
        TrainingLoop.Run(Fresh(qat ? WeightFormat.Q2Seq : null), train, validation, settings, _
            => allocated.Add(GC.GetAllocatedBytesForCurrentThread()));
        // Activations (of the training batch and of a validation window), gradients, scratch and GEMM panels are reused;
        // what is left per step is the metrics line and the report.
        double perStep = (allocated[^1] - allocated[2]) / (double)(allocated.Count - 3);
        Assert.True(perStep < 4096, $"{perStep:F0} bytes allocated per training step");
    }
}
