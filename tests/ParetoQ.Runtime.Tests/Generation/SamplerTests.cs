using ParetoQ.Runtime.Generation;

namespace ParetoQ.Runtime.Tests;

public sealed class SamplerTests
{
    private static readonly float[] Logits = [1.0f, 3.0f, 2.5f, -1f, 0.5f, 2.9f];

    [Fact]
    public void Greedy_is_argmax_and_ignores_the_seed()
    {
        Assert.Equal(1, new Sampler(6, SamplerOptions.Greedy).Sample(Logits, []));
        Assert.Equal(1, new Sampler(6, SamplerOptions.Greedy with { Seed = 99 }).Sample(Logits, []));
        Assert.Equal(1, new Sampler(6, new SamplerOptions { TopK = 1, RepeatPenalty = 1 }).Sample(Logits, []));
    }

    [Fact]
    public void The_same_seed_gives_the_same_tokens_and_another_seed_differs()
    {
        int[] Run(ulong seed)
        {
            var s = new Sampler(6,
                new SamplerOptions { Temperature = 1.5f, TopK = 0, TopP = 1, MinP = 0, RepeatPenalty = 1,
                Seed = seed });
            return Enumerable.Range(0, 64).Select(_ => s.Sample(Logits, [])).ToArray();
        }
        Assert.Equal(Run(7), Run(7));
        Assert.NotEqual(Run(7), Run(8));
    }

    [Fact]
    public void Draws_follow_the_tempered_softmax()
    {
        const int draws = 40000;
        float temperature = 0.7f;
        var s = new Sampler(6,
            new SamplerOptions { Temperature = temperature, TopK = 0, TopP = 1, MinP = 0, RepeatPenalty = 1,
            Seed = 3 });
        var counts = new int[6];
        for (int i = 0; i < draws; i++) counts[s.Sample(Logits, [])]++;
        double z = Logits.Sum(l => Math.Exp(l / temperature));
        for (int i = 0; i < 6; i++)
        {
            double p = Math.Exp(Logits[i] / temperature) / z;
            double sigma = Math.Sqrt(p * (1 - p) / draws);
            Assert.InRange((double)counts[i] / draws, p - 5 * sigma - 1e-4, p + 5 * sigma + 1e-4);
        }
    }

    [Fact]
    public void Top_k_top_p_and_min_p_restrict_the_candidates()
    {
        HashSet<int> Seen(SamplerOptions o)
        {
            var s = new Sampler(6, o with { Temperature = 5f, RepeatPenalty = 1 });
            return Enumerable.Range(0, 3000).Select(_ => s.Sample(Logits, [])).ToHashSet();
        }
        Assert.Equal([1, 2, 5], Seen(new SamplerOptions { TopK = 3, TopP = 1, MinP = 0 }).Order());
        // At temperature 5 the probabilities are nearly flat: top-p 0.3 needs the two largest (1 and 5).
        Assert.Equal([1, 5], Seen(new SamplerOptions { TopK = 0, TopP = 0.3f, MinP = 0 }).Order());
        // min-p 0.95 keeps tokens within 5 % of the best: exp((2.9−3)/5) = 0.98 stays, exp((2.5−3)/5) = 0.90 goes.
        Assert.Equal([1, 5], Seen(new SamplerOptions { TopK = 0, TopP = 1, MinP = 0.95f }).Order());
    }

    [Fact]
    public void Repetition_penalty_applies_once_per_distinct_recent_token()
    {
        var o = SamplerOptions.Greedy with { RepeatPenalty = 1.2f, RepeatWindow = 4 };
        Assert.Equal(5, new Sampler(6, o).Sample(Logits, [1]));            // 3/1.2 = 2.5 < 2.9
        Assert.Equal(5, new Sampler(6, o).Sample(Logits, [1, 1, 1]));      // not 3/1.2³
        Assert.Equal(1, new Sampler(6, o).Sample(Logits, [1, 0, 0, 0, 0])); // token 1 left the window
        // 2.5 beats 2.9/1.25 and 3/1.25
        Assert.Equal(2, new Sampler(6, o with { RepeatPenalty = 1.25f }).Sample(Logits, [1, 5]));
    }

    [Fact]
    public void Bad_settings_name_themselves()
    {
        Assert.Contains("temperature",
            Assert.Throws<ArgumentException>(() => new Sampler(6, new SamplerOptions { Temperature = -1 })).Message);
        Assert.Contains("top-p",
            Assert.Throws<ArgumentException>(() => new Sampler(6, new SamplerOptions { TopP = 0 })).Message);
        Assert.Contains("min-p",
            Assert.Throws<ArgumentException>(() => new Sampler(6, new SamplerOptions { MinP = 2 })).Message);
        Assert.Contains("repeat penalty",
            Assert.Throws<ArgumentException>(() => new Sampler(6, new SamplerOptions { RepeatPenalty = 0 })).Message);
        Assert.Contains("6 logits",
            Assert.Throws<ArgumentException>(() => new Sampler(5, SamplerOptions.Greedy).Sample(Logits, [])).Message);
    }

    [Fact]
    public void Sampling_allocates_nothing()
    {
        int[] recent = [1, 2];
        foreach (var o in new[] { new SamplerOptions { TopK = 3 }, new SamplerOptions { TopK = 0 },
            SamplerOptions.Greedy })
        {
            var s = new Sampler(6, o);
            s.Sample(Logits, recent);
            long before = GC.GetAllocatedBytesForCurrentThread();
            for (int i = 0; i < 100; i++) s.Sample(Logits, recent);
            Assert.Equal(0, GC.GetAllocatedBytesForCurrentThread() - before);
        }
    }
}
