using System.Diagnostics;

namespace ParetoQ.Bench;

internal static class Timing
{
    /// <summary>Median seconds of one call of <paramref name="action"/>, after a warm-up, repeated for at least
    /// minSeconds and 3 runs.</summary>
    public static double Median(Action action, double minSeconds)
    {
        action();
        var samples = new List<double>();
        var total = Stopwatch.StartNew();
        while (samples.Count < 3 || (total.Elapsed.TotalSeconds < minSeconds && samples.Count < 10_000))
        {
            long start = Stopwatch.GetTimestamp();
            action();
            samples.Add(Stopwatch.GetElapsedTime(start).TotalSeconds);
        }
        samples.Sort();
        return samples[samples.Count / 2];
    }

    public static double Seconds(Action action)
    {
        long start = Stopwatch.GetTimestamp();
        action();
        return Stopwatch.GetElapsedTime(start).TotalSeconds;
    }
}
