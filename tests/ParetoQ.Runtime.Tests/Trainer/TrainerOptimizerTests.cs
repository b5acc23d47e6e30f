using System.Text;
using ParetoQ.Runtime.Model;
using ParetoQ.Runtime.Quantization;
using ParetoQ.Runtime.Text;
using ParetoQ.Trainer;

namespace ParetoQ.Runtime.Tests;

/// <summary>AdamW and its schedule, and short real trainings on Brown-corpus text: full precision, then QAT.</summary>
public sealed class TrainerOptimizerTests
{
    [Fact]
    public void The_schedule_warms_up_linearly_then_follows_a_cosine()
    {
        var s = new AdamWSettings { LearningRate = 1e-3, MinLearningRate = 1e-4, WarmupSteps = 4, TotalSteps = 14 };
        Assert.Equal(0.25e-3, s.RateAt(0), 12);
        Assert.Equal(1e-3, s.RateAt(3), 12);
        Assert.Equal(1e-3, s.RateAt(4), 12);
        Assert.Equal(0.55e-3, s.RateAt(9), 12);  // halfway through the cosine
        Assert.Equal(1e-4, s.RateAt(14), 12);
        Assert.Equal(1e-4, s.RateAt(100), 12);
        Assert.Throws<ArgumentException>(() => new AdamWSettings { WarmupSteps = 5, TotalSteps = 2 }.Validate());
        Assert.Throws<ArgumentException>(() => new AdamWSettings { LearningRate = 0 }.Validate());

        // A resumed run given more steps stretches the cosine to the new end instead of idling at the minimum.
        var optimizer = new AdamW(new TransformerModel<float>(Small(16)), s) { Step = 14 };
        optimizer.Reschedule(24);
        Assert.Equal(1e-4 + 0.5 * 0.9e-3 * (1 + Math.Cos(Math.PI * 10 / 20)), optimizer.Settings.RateAt(14), 12);
        Assert.Equal(1e-4, optimizer.Settings.RateAt(24), 12);
        Assert.Throws<ArgumentException>(() => optimizer.Reschedule(10));
    }

    /// <summary>The vectorized, chunked update against AdamW written out in double, element by element: weights that
    /// decay and norms that do not, α, vector tails (every tensor of this model has an odd length), clipping.</summary>
    [Fact]
    public void The_update_matches_adamw_written_out_in_double()
    {
        var config = Small(17, hidden: 20, intermediate: 37);
        var model = new TransformerModel<float>(config, WeightFormat.Q2Seq);
        model.InitializeRandom(3);
        model.InitializeAlphas();
        var settings = new AdamWSettings { LearningRate = 1e-2, WeightDecay = 0.1, ClipNorm = 0.5, TotalSteps = 4 };
        var optimizer = new AdamW(model, settings);
        bool[] decays = new bool[model.Parameters.Length];
        foreach (var slot in model.Slots) decays.AsSpan(slot.Offset, slot.Length).Fill(!slot.Spec.IsNorm);
        var rng = new Random(5);
        double[] p = [.. model.Parameters.Select(x => (double)x)], a = [.. model.Alphas.Select(x => (double)x)];
        double[] m = new double[p.Length], v = new double[p.Length];
        double[] am = new double[a.Length], av = new double[a.Length];
        for (int step = 1; step <= 3; step++)
        {
            for (int i = 0; i < model.Gradients.Length; i++) model.Gradients[i] = (float)(rng.NextDouble() - 0.5);
            for (int i = 0; i < model.AlphaGradients.Length; i++)
                model.AlphaGradients[i] = (float)(rng.NextDouble() - 0.5);
            double norm = Math.Sqrt(model.Gradients.Concat(model.AlphaGradients).Sum(g => (double)g * g));
            double clip = Math.Min(1, settings.ClipNorm / norm), lr = settings.RateAt(step - 1);
            void Reference(double[] x, float[] g, double[] mx, double[] vx, bool[]? decay)
            {
                for (int i = 0; i < x.Length; i++)
                {
                    double grad = g[i] * clip;
                    mx[i] = 0.9 * mx[i] + 0.1 * grad;
                    vx[i] = 0.95 * vx[i] + 0.05 * grad * grad;
                    double update = mx[i] / (1 - Math.Pow(0.9, step)) / (Math.Sqrt(vx[i] / (1 - Math.Pow(0.95, step)))
                        + 1e-8);
                    x[i] -= lr * (update + (decay is not null && decay[i] ? 0.1 * x[i] : 0));
                }
            }
            Reference(p, model.Gradients, m, v, decays);
            Reference(a, model.AlphaGradients, am, av, null);
            var (reported, rate) = optimizer.Update(model);
            Assert.Equal(norm, reported, 1e-9 * norm);
            Assert.Equal(lr, rate, 15);
            for (int i = 0; i < p.Length; i++) Assert.Equal(p[i], model.Parameters[i], 2e-5);
            for (int i = 0; i < a.Length; i++) Assert.Equal(a[i], model.Alphas[i], 2e-5);
            for (int i = 0; i < m.Length; i++)
            {
                Assert.Equal(m[i], optimizer.M[i], 1e-6);
                Assert.Equal(v[i], optimizer.V[i], 1e-6);
            }
        }
    }

    private static ModelConfig Small(int vocab, int hidden = 32, int intermediate = 64) => new()
    {
        Architecture = "mobilellm", VocabSize = vocab, HiddenSize = hidden, IntermediateSize = intermediate,
            NumLayers = 2,
            NumHeads = 4, NumKvHeads = 2, HeadDim = 8,
        MaxPositionEmbeddings = 64, RmsNormEps = 1e-5f, RopeTheta = 10000, RopeLayout = RopeLayout.RotateHalf,
            TieWordEmbeddings = true,
        LayerTypes = [AttentionKind.Global, AttentionKind.Global], RopeLayers = [true, true],
    };

    // Byte-level tokens of the first Brown paragraphs: 32-token windows, each target the next token.
    private static int[] BrownBytes() =>
        [.. Encoding.UTF8.GetBytes(string.Join("\n", File.ReadLines(TestData.Path("brown/text.txt")).Take(40))).Select(b
            => (int)b)];

    private static double Train(TransformerModel<float> model, AdamW optimizer, int[] data, int steps, int first = 0)
    {
        double last = 0;
        for (int step = first; step < first + steps; step++)
        {
            int start = step * 37 % (data.Length - 33);
            model.ZeroGradients();
            last = model.Forward(data.AsSpan(start, 32), data.AsSpan(start + 1, 32));
            model.Backward(1f);
            optimizer.Update(model);
        }
        return last;
    }

    private static double Evaluate(TransformerModel<float> model, int[] data)
    {
        double sum = 0;
        for (int w = 0; w < 8; w++) sum += model.Forward(data.AsSpan(w * 101, 32), data.AsSpan(w * 101 + 1, 32));
        return sum / 8;
    }

    [Fact]
    public void Training_lowers_the_loss_in_full_precision_and_then_in_QAT()
    {
        int[] data = BrownBytes();
        var config = Small(ByteLevelVocabulary.Size(chatTokens: false));
        var model = new TransformerModel<float>(config);
        var rng = new Random(1);
        foreach (var slot in model.Slots)
            for (int i = 0; i < slot.Length; i++)
                model.Parameters[slot.Offset + i] = slot.Spec.IsNorm ? 1f : (float)((rng.NextDouble() * 2 - 1) * 0.1);
        double before = Evaluate(model, data);
        Train(model, new AdamW(model, new AdamWSettings { LearningRate = 3e-3, TotalSteps = 150 }), data, 150);
        double pretrained = Evaluate(model, data);
        Assert.True(pretrained < before - 1.5, $"pretraining: loss {before:F3} → {pretrained:F3}");

        // QAT from the pretrained weights at 2 bits: quantizing first costs loss, training recovers some of it.
        var qat = model.WithProjections(WeightFormat.Q2Seq);
        double quantized = Evaluate(qat, data);
        Train(qat, new AdamW(qat, new AdamWSettings { LearningRate = 1e-3, TotalSteps = 60 }), data, 60);
        double recovered = Evaluate(qat, data);
        Assert.True(quantized > pretrained, $"2-bit PTQ {quantized:F3} vs full precision {pretrained:F3}");
        Assert.True(recovered < quantized - 0.1, $"QAT: loss {quantized:F3} → {recovered:F3}");
        Assert.Contains(qat.Alphas, a => a != 0);
    }
}
