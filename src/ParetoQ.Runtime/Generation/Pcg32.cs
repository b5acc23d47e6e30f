namespace ParetoQ.Runtime.Generation;

/// <summary>
/// PCG32 (XSH-RR): a small random stream that gives the same numbers on every platform. <see cref="State"/> is all of
/// it, so samplers and trainers can save and restore it.
/// </summary>
public struct Pcg32(ulong state)
{
    public ulong State = state;

    /// <summary>The stream a seed starts: one LCG step from the seed.</summary>
    public static Pcg32 FromSeed(ulong seed) => new(seed * 6364136223846793005UL + 1442695040888963407UL);

    public uint NextUInt()
    {
        ulong old = State;
        State = old * 6364136223846793005UL + 1442695040888963407UL;
        uint xorshifted = (uint)(((old >> 18) ^ old) >> 27);
        int rot = (int)(old >> 59);
        return (xorshifted >> rot) | (xorshifted << (-rot & 31));
    }

    /// <summary>24 random bits in [0, 1).</summary>
    public float NextFloat() => (NextUInt() >> 8) * (1f / (1 << 24));

    /// <summary>Uniform in [0, bound) (Lemire's multiply-shift; bias below 2⁻³² · bound).</summary>
    public int NextInt(int bound) => (int)((ulong)NextUInt() * (uint)bound >> 32);
}
